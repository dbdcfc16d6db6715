"""What the stack asks for, as plain data: key slots, zones and hosts. Pure; no Pulumi.

A *slot* is one key lineage: (domain, slot name, algorithm). In `shared` mode a
domain has one slot per algorithm, used by all its signers; in `per-signer`
mode each signer has its own slot (and selector) per algorithm.
"""

from __future__ import annotations

from dataclasses import dataclass

from dkimroll.config import StackConfig
from keys import keygen

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
    testing: bool
    sign_for: tuple[str, ...]
    retain_seconds: int  # how long a withdrawn record stays published

    @property
    def resource_name(self) -> str:
        return f"{self.domain}/{self.name}/{self.key_type}"


def slots(config: StackConfig) -> list[Slot]:
    """Every key slot of the stack, in a stable order."""
    result: list[Slot] = []
    for domain in sorted(config.domains):
        spec = config.domains[domain]
        template = config.selector_template(domain)
        groups: list[tuple[str, tuple[str, ...]]]
        if spec.mode == "per-signer" and spec.signers:
            groups = [(signer, (signer,)) for signer in spec.signers]
        else:
            groups = [(SHARED, tuple(spec.signers))]
        for slot_name, signers in groups:
            for algorithm in spec.algorithm:
                key_spec = keygen.parse_algorithm(algorithm)
                result.append(
                    Slot(
                        domain=domain,
                        name=slot_name,
                        algorithm=key_spec.name,
                        key_type=key_spec.key_type,
                        selector_template=template,
                        signers=signers,
                        target=spec.dns,
                        zone=config.zone_for(domain),
                        ttl=spec.ttl,
                        testing=spec.testing,
                        sign_for=spec.sign_for,
                        retain_seconds=int(config.rotation_for(domain).retain.total_seconds()),
                    )
                )
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
