"""The DNS gate: is a record served by every authoritative nameserver of its zone?

Queries go directly to each authoritative server (never a caching resolver),
over UDP with TCP fallback, and compare the joined TXT strings. The servers
are the target's `nameservers` list, or else discovered from the zone's NS
records.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdatatype
import dns.resolver

from keys import chunking
from providers.dns.base import TxtRecord

Server = tuple[str, int]


@dataclass(frozen=True)
class Verdict:
    record: TxtRecord
    served: bool
    detail: str  # what each server answered when it was not served


def parse_hostports(items: Iterable[str]) -> list[Server]:
    servers = []
    for item in items:
        host, sep, port = item.rpartition(":")
        servers.append((host, int(port)) if sep and port.isdigit() else (item, 53))
    return servers


def discover(zone: str, resolver: dns.resolver.Resolver | None = None) -> list[Server]:
    """The zone's authoritative servers: its NS names resolved to addresses."""
    resolver = resolver or dns.resolver.Resolver()
    servers: list[Server] = []
    for ns in resolver.resolve(zone, "NS"):
        for rdtype in ("A", "AAAA"):
            try:
                servers.extend((addr.to_text(), 53) for addr in resolver.resolve(ns.target, rdtype))
            except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
                continue
    return sorted(set(servers))


def txt_values(server: Server, name: str, timeout: float = 3.0) -> list[str]:
    """The joined TXT values `server` answers for `name`, asked directly."""
    query = dns.message.make_query(name, dns.rdatatype.TXT)
    query.flags &= ~dns.flags.RD
    response = dns.query.udp(query, server[0], port=server[1], timeout=timeout)
    if response.flags & dns.flags.TC:
        response = dns.query.tcp(query, server[0], port=server[1], timeout=timeout)
    values = []
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.TXT:
            values.extend(chunking.join(rdata.strings) for rdata in rrset)
    return values


def check(servers: Sequence[Server], record: TxtRecord, timeout: float = 3.0) -> Verdict:
    problems = []
    for server in servers:
        try:
            if record.value not in txt_values(server, record.name, timeout):
                problems.append(f"{server[0]}:{server[1]} does not serve it yet")
        except (dns.exception.DNSException, OSError) as exc:
            problems.append(f"{server[0]}:{server[1]} did not answer ({exc.__class__.__name__})")
    if not servers:
        problems.append("no authoritative nameservers found")
    return Verdict(record, not problems, "; ".join(problems))


def wait_served(
    servers: Sequence[Server],
    records: Sequence[TxtRecord],
    deadline_seconds: float,
    interval: float = 1.0,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Verdict]:
    """Poll until every record is served everywhere or the deadline passes; one verdict each."""
    end = monotonic() + deadline_seconds
    verdicts = {r: check(servers, r) for r in records}
    while not all(v.served for v in verdicts.values()) and monotonic() < end:
        sleep(interval)
        for record, verdict in list(verdicts.items()):
            if not verdict.served:
                verdicts[record] = check(servers, record)
    return [verdicts[r] for r in records]
