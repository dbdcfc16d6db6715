"""Suite-wide set-up: a private base directory for temporary files.

OpenDKIM, and dkimroll like it, refuse private keys below a group- or
world-writable directory such as /tmp, so pytest's basetemp defaults to a
directory under the user's cache (~/.cache/dkimroll/test-work/<checkout>),
whose parents are private. Pass --basetemp to override (e.g. for parallel runs).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def default_basetemp() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    checkout = hashlib.sha256(str(REPO).encode()).hexdigest()[:12]
    return cache / "dkimroll" / "test-work" / checkout / "tmp"


def pytest_configure(config) -> None:
    if config.option.basetemp is None:
        base = default_basetemp()
        base.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        config.option.basetemp = str(base)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI (CI=true) a skipped test is a failure: CI must install every server the suite drives."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which must install everything the suite needs: {report.longrepr}"
