"""The record model and the narrow protocol every DNS target implements.

A target sees only whole zones: one `apply` per zone per run is one atomic change
on the backend (one zone-file rewrite, one UPDATE message, one change batch).
Values are the joined, unescaped TXT text; chunking into <=255-octet strings
happens only when a target renders its own wire or file form, so a chunk
boundary can never cause a diff.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import dns.exception
import dns.name

from keys.render import MAX_TTL  # RFC 2181 §8: one definition for every target


@dataclass(frozen=True, order=True)
class TxtRecord:
    """One TXT value dkimroll manages: absolute owner name, joined text, TTL."""

    name: str  # absolute owner in A-labels, lower case, no trailing dot
    value: str  # the joined, unescaped TXT text
    ttl: int = 3600

    def to_dict(self) -> dict:
        return {"name": self.name, "value": self.value, "ttl": self.ttl}

    @classmethod
    def from_dict(cls, data: dict) -> "TxtRecord":
        return cls(name=str(data["name"]), value=str(data["value"]), ttl=int(data["ttl"]))


def in_zone(name: str, zone: str) -> bool:
    """True when `name` is at or below `zone`, compared label by label (never `endswith`)."""
    return dns.name.from_text(name).is_subdomain(dns.name.from_text(zone))


def record_problems(zone: str, records: Sequence[TxtRecord], min_ttl: int = 0,
                    low_ttl_advice: str = "") -> list[str]:
    """The checks every target makes before writing: names inside the zone, TTL in range."""
    problems: list[str] = []
    for record in records:
        try:
            inside = in_zone(record.name, zone)
        except dns.exception.DNSException as exc:
            problems.append(f"record {record.name!r} is not a valid DNS name: {exc}")
            continue
        if not inside:
            problems.append(f"record {record.name} is not within zone {zone}")
        ttl = record.ttl
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= MAX_TTL:
            problems.append(f"record {record.name}: TTL {ttl!r} is out of range (0..{MAX_TTL})")
        elif ttl < min_ttl:
            problems.append(f"record {record.name}: TTL {ttl} is too low{low_ttl_advice}")
    return problems


def relative_name(name: str, zone: str) -> str:
    """The owner relative to the zone, '@' for the apex."""
    rel = dns.name.from_text(name).relativize(dns.name.from_text(zone))
    text = rel.to_text()
    return "@" if text == "@" else text


class DnsBackend(Protocol):
    """What the Pulumi layer needs from a DNS target. Implementations own all traffic."""

    name: str  # the target's name in the stack file, for messages

    def check(self, zone: str, records: Sequence[TxtRecord]) -> list[str]:
        """Problems that would make `apply` fail, found without writing anything."""

    def present(self, zone: str, records: Sequence[TxtRecord]) -> list[TxtRecord]:
        """The subset of `records` the backend holds now (name and joined value match)."""

    def apply(self, zone: str, add: Sequence[TxtRecord], remove: Sequence[TxtRecord]) -> bool:
        """Add and remove exactly these values in one atomic change; True if anything was written.

        Values at the same names that are not listed are left alone (SPF,
        verification tokens, records of other tools).
        """
