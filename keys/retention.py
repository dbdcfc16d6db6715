"""Keep withdrawn records published for their `retain` period (invariant 2). Pure.

When a key leaves the stack (a signer removed in per-signer mode, a domain
removed, a key replaced), mail it signed may still sit in queues. Its record
therefore moves to a *retiring* list with a deadline and stays in DNS until
that deadline; a later run withdraws it. `destroy` withdraws everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from keys import clock


@dataclass(frozen=True)
class ZoneStep:
    add: tuple[dict, ...]  # records to publish now
    remove: tuple[dict, ...]  # records to withdraw now
    retiring: tuple[dict, ...]  # records kept until their "until" (ISO time)


def _key(record: dict) -> tuple[str, str]:
    return record["name"], record["value"]


def plan_zone_step(old: list[dict], retiring: list[dict], new: list[dict], now: datetime,
                   withdraw: frozenset[str] = frozenset()) -> ZoneStep:
    """What to add and remove so the zone serves `new` plus records still within `retain`.

    A record leaves at once, without a retain period, when its name is still
    wanted with another value (a key revoked to an empty p=) or when rotation
    withdraws it on purpose (`withdraw`: its retain period has already passed).
    """
    new_keys = {_key(r) for r in new}
    new_names = {r["name"] for r in new}
    old_keys = {_key(r) for r in old}
    still: dict[tuple[str, str], dict] = {}
    remove: list[dict] = []
    for record in retiring:
        if _key(record) in new_keys:
            continue  # wanted again: it is already published
        if clock.parse_iso(record["until"]) <= now or record["name"] in new_names:
            remove.append(record)
        else:
            still[_key(record)] = record
    for record in old:
        if _key(record) in new_keys:
            continue
        retain = int(record.get("retain") or 0)
        if retain > 0 and record["name"] not in new_names and record["name"] not in withdraw:
            until = clock.iso(now + timedelta(seconds=retain))
            still[_key(record)] = {**record, "until": until}
        else:
            remove.append(record)
    published = old_keys | {_key(r) for r in retiring}
    add = [r for r in new if _key(r) not in published]
    return ZoneStep(tuple(add), tuple(remove), tuple(sorted(still.values(), key=_key)))


def has_expired(retiring: list[dict], now: datetime) -> bool:
    """True when some retiring record is due for withdrawal: a run has work to do."""
    return any(clock.parse_iso(record["until"]) <= now for record in retiring)
