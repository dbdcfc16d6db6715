"""Key rotation as pure functions of policy, recorded timestamps and the current time.

A slot (one key lineage) holds a short list of keys, each with the times it
entered its phases:

    published ──(publish_ahead passed and every nameserver serves it)──▶ active
    active ──(its successor became active)──▶ retired
    retired ──(retain passed, or at once when the successor was an emergency)──▶ revoked
    revoked ──(revoke_for passed with "empty-p"; at once with "withdraw")──▶ gone

A run calls `advance` before DNS is written (which keys exist and what DNS
must show) and `activate` after DNS was verified (which key signers use).
Both return new tuples; nothing here does I/O, so every transition is tested
without servers, and repeated runs inside a phase change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Callable, Iterable

from keys import clock

PUBLISHED, ACTIVE, RETIRED, REVOKED, GONE = "published", "active", "retired", "revoked", "gone"


@dataclass(frozen=True)
class Policy:
    every: timedelta = timedelta(days=180)
    publish_ahead: timedelta = timedelta(days=2)
    retain: timedelta = timedelta(days=7)
    revoke: str = "empty-p"  # or "withdraw"
    revoke_for: timedelta = timedelta(days=7)
    rotates: bool = True  # False for a fixed selector: rotation only on demand


@dataclass(frozen=True)
class KeyEntry:
    """One key of a slot and the times it entered each phase (UTC)."""

    selector: str
    published: datetime
    activated: datetime | None = None
    retired: datetime | None = None
    revoked: datetime | None = None
    urgent: bool = False  # made by an emergency (compromised) rotation
    reason: str = "schedule"  # why it was made: first, schedule, requested, compromised, algorithm
    algorithm: str = ""  # e.g. "rsa-2048": a change of algorithm starts a rotation

    @property
    def phase(self) -> str:
        if self.revoked is not None:
            return REVOKED
        if self.retired is not None:
            return RETIRED
        if self.activated is not None:
            return ACTIVE
        return PUBLISHED

    def to_dict(self) -> dict:
        data = {"selector": self.selector, "published": clock.iso(self.published), "reason": self.reason,
                "algorithm": self.algorithm}
        for name in ("activated", "retired", "revoked"):
            value = getattr(self, name)
            if value is not None:
                data[name] = clock.iso(value)
        if self.urgent:
            data["urgent"] = True
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "KeyEntry":
        def when(name: str) -> datetime | None:
            return clock.parse_iso(data[name]) if data.get(name) else None

        return cls(
            selector=data["selector"],
            published=clock.parse_iso(data["published"]),
            activated=when("activated"),
            retired=when("retired"),
            revoked=when("revoked"),
            urgent=bool(data.get("urgent")),
            reason=data.get("reason", "schedule"),
            algorithm=data.get("algorithm", ""),
        )


@dataclass(frozen=True)
class Request:
    """An operator's `dkimroll rotate`: start a rotation now; `compromised` hurries every step."""

    compromised: bool = False
    at: datetime | None = None


@dataclass(frozen=True)
class Transition:
    selector: str
    phase: str  # the phase entered
    at: datetime


def active(entries: Iterable[KeyEntry]) -> KeyEntry | None:
    found = [e for e in entries if e.phase == ACTIVE]
    return found[-1] if found else None


def pending(entries: Iterable[KeyEntry]) -> KeyEntry | None:
    found = [e for e in entries if e.phase == PUBLISHED]
    return found[-1] if found else None


def rotation_due(policy: Policy, entries: tuple[KeyEntry, ...], now: datetime) -> datetime | None:
    """When the active key is due to be replaced on schedule (None: never, or already under way)."""
    current = active(entries)
    if current is None or pending(entries) is not None or not policy.rotates:
        return None
    assert current.activated is not None
    return current.activated + policy.every


def advance(
    policy: Policy,
    entries: tuple[KeyEntry, ...],
    now: datetime,
    new_selector: Callable[[set[str]], str],
    request: Request | None = None,
    algorithm: str = "",
) -> tuple[tuple[KeyEntry, ...], list[Transition]]:
    """Before DNS is written: revoke and drop old keys, and start a rotation when one is due."""
    events: list[Transition] = []
    kept: list[KeyEntry] = []
    for entry in entries:
        if entry.phase == RETIRED:
            assert entry.retired is not None
            successor_urgent = any(e.urgent and e.activated == entry.retired for e in entries)
            if successor_urgent or now >= entry.retired + policy.retain:
                entry = replace(entry, revoked=now)
                events.append(Transition(entry.selector, REVOKED, now))
        if entry.phase == REVOKED:
            assert entry.revoked is not None
            if policy.revoke == "withdraw" or now >= entry.revoked + policy.revoke_for:
                events.append(Transition(entry.selector, GONE, now))
                continue
        kept.append(entry)

    start: str | None = None
    if not any(e.phase in (PUBLISHED, ACTIVE) for e in kept):
        start = "first" if not kept else "replacement"
    elif request is not None and pending(kept) is None:
        start = "compromised" if request.compromised else "requested"
    elif algorithm and pending(kept) is None and (active(kept) or kept[-1]).algorithm not in ("", algorithm):
        start = "algorithm"
    else:
        due = rotation_due(policy, tuple(kept), now)
        if due is not None and now >= due:
            start = "schedule"
    if start is not None:
        taken = {e.selector for e in kept}
        entry = KeyEntry(selector=new_selector(taken), published=now, reason=start,
                         urgent=start == "compromised", algorithm=algorithm)
        kept.append(entry)
        events.append(Transition(entry.selector, PUBLISHED, now))
    return tuple(kept), events


def activation_candidate(policy: Policy, entries: tuple[KeyEntry, ...], now: datetime) -> KeyEntry | None:
    """The published key that may become active now, once the DNS gate passes."""
    candidate = pending(entries)
    if candidate is None:
        return None
    first = active(entries) is None
    if first or candidate.urgent or now >= candidate.published + policy.publish_ahead:
        return candidate
    return None


def activate(
    policy: Policy,
    entries: tuple[KeyEntry, ...],
    now: datetime,
    served: Callable[[KeyEntry], bool],
) -> tuple[tuple[KeyEntry, ...], list[Transition]]:
    """After DNS is verified: switch signers to the candidate if every nameserver serves it."""
    candidate = activation_candidate(policy, entries, now)
    if candidate is None or not served(candidate):
        return entries, []
    events = [Transition(candidate.selector, ACTIVE, now)]
    result = []
    for entry in entries:
        if entry is candidate:
            entry = replace(entry, activated=now)
        elif entry.phase == ACTIVE:
            entry = replace(entry, retired=now)
            events.append(Transition(entry.selector, RETIRED, now))
        result.append(entry)
    return tuple(result), events


def next_transition(policy: Policy, entries: tuple[KeyEntry, ...], entry: KeyEntry) -> tuple[str, datetime | None]:
    """What happens next to `entry` and when (None: waits on DNS or on another key)."""
    if entry.phase == PUBLISHED:
        if active(entries) is None or entry.urgent:
            return ACTIVE, entry.published
        return ACTIVE, entry.published + policy.publish_ahead
    if entry.phase == ACTIVE:
        assert entry.activated is not None
        if not policy.rotates:
            return RETIRED, None
        return "rotation", entry.activated + policy.every
    if entry.phase == RETIRED:
        assert entry.retired is not None
        return REVOKED, entry.retired + policy.retain
    assert entry.revoked is not None
    return GONE, entry.revoked if policy.revoke == "withdraw" else entry.revoked + policy.revoke_for


@dataclass(frozen=True)
class SlotLedger:
    """The recorded history of one slot, as kept in the stack's `ledger` output."""

    entries: tuple[KeyEntry, ...] = field(default_factory=tuple)

    def to_list(self) -> list[dict]:
        return [entry.to_dict() for entry in self.entries]

    @classmethod
    def from_list(cls, items: Iterable[dict] | None) -> "SlotLedger":
        return cls(tuple(KeyEntry.from_dict(item) for item in items or []))
