"""The one place dkimroll reads the time.

Rotation is a pure function of policy, recorded timestamps and "now"; every
caller gets "now" from here. `DKIMROLL_NOW` (ISO-8601) overrides the clock and
exists for tests only: never set it in production cron jobs.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

from providers.errors import ConfigError

NOW_ENV = "DKIMROLL_NOW"


def now() -> datetime:
    """Current UTC time, or the test override from DKIMROLL_NOW."""
    override = os.environ.get(NOW_ENV)
    if not override:
        return datetime.now(timezone.utc)
    try:
        parsed = datetime.fromisoformat(override.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(NOW_ENV, f"not an ISO-8601 time: {override!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def iso(when: datetime) -> str:
    """The canonical text form kept in state: UTC, seconds precision, 'Z' suffix."""
    return when.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)
