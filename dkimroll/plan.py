"""What the stack asks for, as plain data: key slots, their rotation step, records, hosts. Pure.

A *slot* is one key lineage: (domain, slot name, algorithm). In `shared` mode a
domain has one slot per algorithm, used by all its signers; in `per-signer`
mode each signer has its own slot (and selector) per algorithm. The ledger
(the stack's `ledger` output of the previous run) records each slot's keys and
their phase timestamps; `keys.rotation` moves them on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable

from dkimroll.config import StackConfig
from keys import clock, keygen, rotation
from keys import record as dkim_record
from keys import selector as selectors

SHARED = "shared"


@dataclass(frozen=True)
class Slot:
    domain: str
    name: str  # "shared" or the signer's name
    algorithm: str  # e.g. "rsa-2048", "ed25519"
    key_type: str  # "rsa" or "ed25519"
    selector_template: str
    signers: tuple[str, ...]  # hosts that sign with this slot's active key
    target: str  # DNS target name
    zone: str
    ttl: int
    testing: bool | str  # True, False or "staged"
    sign_for: tuple[str, ...]
    retain_seconds: int  # how long a withdrawn record stays published
    policy: rotation.Policy

    @property
    def resource_name(self) -> str:
        return f"{self.domain}/{self.name}/{self.key_type}"

    def owner(self, selector: str) -> str:
        return f"{selector}._domainkey.{self.domain}"


def slots(config: StackConfig) -> list[Slot]:
    """Every key slot of the stack, in a stable order."""
    result: list[Slot] = []
    for domain in sorted(config.domains):
        spec = config.domains[domain]
        template = config.selector_template(domain)
        rules = config.rotation_for(domain)
        policy = rotation.Policy(every=rules.every, publish_ahead=rules.publish_ahead, retain=rules.retain,
                                 revoke=rules.revoke, revoke_for=rules.revoke_for,
                                 rotates=selectors.is_template(template))
        if spec.mode == "per-signer" and spec.signers:
            groups = [(signer, (signer,)) for signer in spec.signers]
        else:
            groups = [(SHARED, tuple(spec.signers))]
        for slot_name, signers in groups:
            for algorithm in spec.algorithm:
                key_spec = keygen.parse_algorithm(algorithm)
                result.append(Slot(
                    domain=domain, name=slot_name, algorithm=key_spec.name, key_type=key_spec.key_type,
                    selector_template=template, signers=signers, target=spec.dns,
                    zone=config.zone_for(domain), ttl=spec.ttl, testing=spec.testing,
                    sign_for=spec.sign_for, retain_seconds=int(rules.retain.total_seconds()), policy=policy,
                ))
    return result


def zones(all_slots: list[Slot]) -> dict[tuple[str, str], list[Slot]]:
    """Slots grouped by (DNS target, zone): one DNS resource each."""
    grouped: dict[tuple[str, str], list[Slot]] = {}
    for slot in all_slots:
        grouped.setdefault((slot.target, slot.zone), []).append(slot)
    return dict(sorted(grouped.items()))


def hosts(all_slots: list[Slot]) -> dict[str, list[Slot]]:
    """Slots grouped by signer host: one signer resource each."""
    grouped: dict[str, list[Slot]] = {}
    for slot in all_slots:
        for signer in slot.signers:
            grouped.setdefault(signer, []).append(slot)
    return dict(sorted(grouped.items()))


def weak_algorithms(config: StackConfig) -> list[str]:
    """Warnings for keys under 2048 bits, naming the stack key."""
    warnings = []
    for domain, spec in sorted(config.domains.items()):
        for algorithm in spec.algorithm:
            if keygen.weak(keygen.parse_algorithm(algorithm)):
                warnings.append(
                    f"dkimroll:domains.{domain}.algorithm: {algorithm} is weak; receivers may ignore "
                    "signatures made with keys under 2048 bits (use rsa-2048 or larger)"
                )
    return warnings


# --- rotation step -----------------------------------------------------------


def selector_factory(slot: Slot, now: datetime) -> Callable[[set[str]], str]:
    """New selectors from the slot's template at `now`, made distinct from those in use."""

    def make(taken: set[str]) -> str:
        signer = None if slot.name == SHARED else slot.name
        base = selectors.render_selector(slot.selector_template, now, signer=signer, alg=slot.key_type)
        selector, n = base, 2
        while selector in taken:
            selector, n = f"{base}-{n}", n + 1
        return selector

    return make


def ledger_entries(ledger: dict[str, Any], slot: Slot) -> tuple[rotation.KeyEntry, ...]:
    return rotation.SlotLedger.from_list((ledger.get(slot.resource_name) or {}).get("keys")).entries


def ring_wanted(entries: Iterable[rotation.KeyEntry], slot: Slot, has_import: bool) -> list[dict[str, Any]]:
    """The keys a slot's KeyRing must hold: every key still in DNS with a real p=."""
    return [
        {"selector": e.selector, "algorithm": e.algorithm or slot.algorithm,
         "use_import": has_import and e.reason == "first"}
        for e in entries if e.phase != rotation.REVOKED
    ]


def testing_flag(slot: Slot, entries: Iterable[rotation.KeyEntry]) -> bool:
    """t=y: always with `testing: true`; with "staged" until a key of the slot was ever active."""
    if slot.testing == "staged":
        return not any(e.activated is not None for e in entries)
    return bool(slot.testing)


def slot_records(slot: Slot, entries: tuple[rotation.KeyEntry, ...], keys: list[dict[str, Any]]) -> list[dict]:
    """The TXT records of a slot: real keys for published/active/retired, empty p= when revoked."""
    by_selector = {key["selector"]: key for key in keys}
    t_flag = ("y",) if testing_flag(slot, entries) else ()
    records = []
    for entry in entries:
        if entry.phase == rotation.REVOKED:
            record = dkim_record.DkimRecord(k=slot.key_type, p="")
        else:
            key = by_selector[entry.selector]
            record = dkim_record.DkimRecord(k=key["key_type"], p=key["p"], t=t_flag)
        records.append({"name": slot.owner(entry.selector), "value": dkim_record.build(record),
                        "ttl": slot.ttl, "retain": slot.retain_seconds})
    return records


def served_check(slot: Slot, records: list[dict], verified: Iterable[dict]) -> Callable[[rotation.KeyEntry], bool]:
    """The gate for one slot: is the entry's exact record among the zone's verified records?"""
    confirmed = {(item["name"], item["value"]) for item in verified}
    expected = {record["name"]: record["value"] for record in records}

    def served(entry: rotation.KeyEntry) -> bool:
        name = slot.owner(entry.selector)
        return (name, expected.get(name)) in confirmed

    return served


def ledger_item(slot: Slot, entries: tuple[rotation.KeyEntry, ...]) -> dict[str, Any]:
    return {"domain": slot.domain, "slot": slot.name, "key_type": slot.key_type, "algorithm": slot.algorithm,
            "signers": list(slot.signers), "zone": slot.zone, "target": slot.target,
            "retain": slot.retain_seconds, "keys": rotation.SlotLedger(entries).to_list()}


def departed(ledger: dict[str, Any], all_slots: list[Slot], targets: Iterable[str],
             now: datetime) -> dict[str, dict[str, Any]]:
    """Slots removed from the stack whose records must stay published until `retain` has passed.

    Their zone resources stay declared (with no wanted records) so the zone's
    retention keeps the records; once `retain` has passed they leave the ledger
    and their zone resource, if no other slot uses it, withdraws what is left.
    """
    current = {slot.resource_name for slot in all_slots}
    known_targets = set(targets)
    kept = {}
    for slot_id, item in ledger.items():
        if slot_id in current or item.get("target") not in known_targets:
            continue
        removed = clock.parse_iso(item["removed"]) if item.get("removed") else now
        if now < removed + timedelta(seconds=int(item.get("retain") or 0)):
            kept[slot_id] = {**item, "removed": clock.iso(removed)}
    return kept
