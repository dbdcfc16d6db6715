"""Thirteen simulated months of `pulumi up` from cron: keys roll and no signature ever breaks.

Two domains: alpha.test (RSA, every 150d, revoke by empty p=) and beta.test
(dual RSA + Ed25519, every 120d, withdraw). `DKIMROLL_NOW` moves monthly, and
daily around every transition. After every step the real OpenDKIM signs with
what the signer holds and dkimpy verifies against the real named serving the
zone files; messages signed at the previous step must still verify.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from keys import rotation
from tests.infra.named import NamedServer
from tests.infra.project import StackProject
from tests.integration.rotation_lab import Lab, entries, zone_file

pytestmark = pytest.mark.engine

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=timezone.utc)
END = T0 + timedelta(days=395)
DAY = timedelta(days=1)

POLICIES = {
    "alpha.test": {"algorithm": "rsa-2048", "selector": "a{yyyy}{mm}{dd}",
                   "rotation": {"every": "150d", "publish_ahead": "2d", "retain": "7d",
                                "revoke": "empty-p", "revoke_for": "7d"}},
    "beta.test": {"algorithm": ["rsa-2048", "ed25519"], "selector": "b{yyyy}{mm}{dd}-{alg}",
                  "rotation": {"every": "120d", "publish_ahead": "3d", "retain": "5d", "revoke": "withdraw"}},
}
SLOTS = {"alpha.test/shared/rsa": "alpha.test", "beta.test/shared/rsa": "beta.test",
         "beta.test/shared/ed25519": "beta.test"}


def expected_counts(every: int, ahead: int, retain: int, revoke_for: int | None) -> Counter:
    """Transitions the policy implies within [T0, END] for one slot (days from T0)."""
    counts = Counter(published=1, active=1)
    activated = 0
    while activated + every <= 395:
        published = activated + every
        counts["published"] += 1
        activated = published + ahead
        if activated <= 395:
            counts["active"] += 1
            counts["retired"] += 1
            if activated + retain <= 395:
                counts["revoked"] += 1
                gone = activated + retain + (revoke_for or 0)
                if gone <= 395:
                    counts["gone"] += 1
    return counts


def transitions(before: tuple[rotation.KeyEntry, ...], after: tuple[rotation.KeyEntry, ...]) -> Counter:
    old = {e.selector: e for e in before}
    new = {e.selector: e for e in after}
    counts: Counter = Counter()
    for selector, entry in new.items():
        prior = old.get(selector)
        if prior is None:
            counts["published"] += 1
        for phase in ("activated", "retired", "revoked"):
            if getattr(entry, phase) is not None and (prior is None or getattr(prior, phase) is None):
                counts[{"activated": "active"}.get(phase, phase)] += 1
    for selector in set(old) - set(new):
        counts["gone"] += 1
        if old[selector].revoked is None:  # "withdraw": revoked and gone in the same run
            counts["revoked"] += 1
    return counts


def next_event(ledger: dict, now: datetime) -> datetime | None:
    """The earliest moment after `now` at which some key of the stack is due to move."""
    times = []
    for slot_id, domain in SLOTS.items():
        slot_entries = entries(ledger, slot_id)
        spec = POLICIES[domain]["rotation"]
        policy = rotation.Policy(
            every=timedelta(days=int(spec["every"][:-1])), publish_ahead=timedelta(days=int(spec["publish_ahead"][:-1])),
            retain=timedelta(days=int(spec["retain"][:-1])), revoke=spec["revoke"],
            revoke_for=timedelta(days=int(spec.get("revoke_for", "7d")[:-1])))
        for entry in slot_entries:
            _what, when = rotation.next_transition(policy, slot_entries, entry)
            if when is not None and when > now:
                times.append(when)
    return min(times) if times else None


@pytest.fixture
def lab(tmp_path) -> Lab:
    project = StackProject(tmp_path / "project")
    (project.root / "zones").mkdir()
    for domain in POLICIES:
        zone_file(project.root / "zones" / f"{domain}.zone", domain)
    with NamedServer(tmp_path / "named", {d: project.root / "zones" / f"{d}.zone" for d in POLICIES}) as named:
        yield Lab(project, named, tmp_path / "work", domains=dict(POLICIES))


def test_thirteen_months_of_cron_never_break_a_signature(lab: Lab):
    lab.up(T0)
    ledger = lab.ledger()
    previous_messages = lab.sign_all("step 0")
    assert not lab.verify_all(previous_messages)
    seen: dict[str, Counter] = {slot: transitions((), entries(ledger, slot)) for slot in SLOTS}
    now, steps, quiet_steps = T0, 0, 0
    while now < END:
        due = next_event(ledger, now)
        if due is not None and due - now > DAY:
            when, expect_quiet = min(now + timedelta(days=30), due - DAY), True
        elif due is not None:
            when, expect_quiet = due, False
        else:
            when, expect_quiet = now + timedelta(days=30), True
        when = min(when, END)
        result = lab.up(when)
        steps += 1
        if expect_quiet:
            assert set(result.changes) == {"same"}, f"{when}: nothing was due, yet {result.changes}"
            quiet_steps += 1
        else:
            assert set(result.changes) != {"same"}, f"{when}: a transition was due, nothing changed"
        new_ledger = lab.ledger()
        for slot in SLOTS:
            seen[slot] += transitions(entries(ledger, slot), entries(new_ledger, slot))
        ledger, now = new_ledger, when
        failures = lab.verify_all(previous_messages)
        assert not failures, f"{when}: messages signed at the previous step no longer verify: {failures}"
        previous_messages = lab.sign_all(f"step {steps}")
        failures = lab.verify_all(previous_messages)
        assert not failures, f"{when}: fresh signatures do not verify: {failures}"

    assert seen["alpha.test/shared/rsa"] == expected_counts(150, 2, 7, 7), seen
    assert seen["beta.test/shared/rsa"] == expected_counts(120, 3, 5, 0), seen
    assert seen["beta.test/shared/ed25519"] == seen["beta.test/shared/rsa"], "dual keys rotate together"
    assert quiet_steps >= 13 and steps > quiet_steps
