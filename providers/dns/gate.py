"""Confirm that records a zone resource wrote are served, before any signer uses them.

`verify` returns the records now known to be served, as kept in the zone's
state: previously verified ones are not asked again. Records that are not
served within the target's `verify_timeout` stay unverified; their keys stay
unused and a later run asks again.
"""

from __future__ import annotations

from typing import Any, Iterable

import dns.exception

from providers.dns import verify as dns_verify
from providers.dns.base import DnsBackend, TxtRecord

VIA_NAMESERVERS = "nameservers"
VIA_BACKEND = "backend"  # read back through the target: proves less than a DNS query


def mode(settings: dict[str, Any]) -> str:
    chosen = settings.get("verify") or "auto"
    if chosen != "auto":
        return chosen
    if settings.get("type") == "bind-file" and not settings.get("nameservers"):
        return VIA_BACKEND
    return VIA_NAMESERVERS


def verify(backend: DnsBackend, settings: dict[str, Any], zone: str, records: Iterable[TxtRecord],
           previous: list[dict]) -> tuple[list[dict], list[dict]]:
    """(verified, unverified): unverified items carry the reason, for the run's report."""
    wanted = set(records)
    wanted_keys = {(r.name, r.value) for r in wanted}
    done = [item for item in previous if (item["name"], item["value"]) in wanted_keys]
    done_keys = {(item["name"], item["value"]) for item in done}
    todo = sorted(r for r in wanted if (r.name, r.value) not in done_keys)
    if not todo:
        return sorted(done, key=lambda i: (i["name"], i["value"])), []
    how = mode(settings)
    reasons: dict[TxtRecord, str] = {}
    if how == VIA_BACKEND:
        served = backend.present(zone, todo)
        reasons = {r: f"not found when read back through dns target '{backend.name}'" for r in todo}
    else:
        configured = settings.get("nameservers") or []
        try:
            servers = dns_verify.parse_hostports(configured) if configured else dns_verify.discover(zone)
        except (dns.exception.DNSException, OSError) as exc:  # cannot confirm now; a later run retries
            servers, served = [], []
            reasons = {r: f"cannot find the authoritative nameservers of {zone} ({exc.__class__.__name__})"
                       for r in todo}
        else:
            verdicts = dns_verify.wait_served(servers, todo, float(settings.get("verify_timeout", 180.0)))
            served = [v.record for v in verdicts if v.served]
            reasons = {v.record: v.detail for v in verdicts if not v.served}
    done += [{"name": r.name, "value": r.value, "via": how} for r in served]
    unverified = [{"name": r.name, "value": r.value, "reason": reasons.get(r, "not served")}
                  for r in todo if r not in served]
    return sorted(done, key=lambda i: (i["name"], i["value"])), unverified
