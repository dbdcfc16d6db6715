"""`dkimroll status` and `dkimroll check`: what the stack holds, and whether DNS and keys agree.

Everything here works on plain data read from a stack (its `ledger`, `records`
and `verification` outputs, the parsed config and, for `check`, the private
keys from the encrypted state) and returns value objects; nothing prints.
`dkimroll.commands` does the reading and the printing.

DNS is read the way the stack's DNS gate reads it (`providers.dns.gate.mode`):
every authoritative nameserver of the zone asked directly (the target's
`nameservers`, else the zone's NS records), or, for targets verified through
the backend, read back through the backend (a zone file, an API) — which
proves less than a DNS query, and every report says so.

Private keys are only ever handed to dkimpy to sign a test message; they never
appear in a row, an item, a message or an exception text.
"""

from __future__ import annotations

import base64
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

import dkim
import dns.exception
import dns.resolver
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from dkimroll import plan
from dkimroll.config import StackConfig
from keys import clock, rotation
from keys import record as dkim_record
from providers.dns import gate
from providers.dns import verify as dns_verify
from providers.dns.base import DnsBackend, TxtRecord
from providers.errors import DkimrollError

DAY = timedelta(days=1)
WEAK = "weak key (under 2048 bits)"
OVERDUE = "rotation overdue"
TESTING = "t=y still on"
DIFFERS = "DNS differs from expected"
NOT_SERVED = "not yet served"
LOOKUP_FAILED = "DNS lookup failed"

# What comes next for a key, in words (keys.rotation.next_transition's first element → verb).
_EVENTS = {
    rotation.ACTIVE: "activate",
    "rotation": "rotate",
    rotation.RETIRED: "retire",
    rotation.REVOKED: "revoke",
    rotation.GONE: "withdraw",
}
_BACKEND_WHAT = {"bind-file": "the zone file", "manual": "the manual export (nothing is queried)"}


# --- status ------------------------------------------------------------------


@dataclass(frozen=True)
class StatusRow:
    """One key of the stack as `dkimroll status` shows it."""

    domain: str
    selector: str
    algorithm: str  # "rsa-2048", "ed25519"
    bits: int
    phase: str  # published | active | retired | revoked
    age: timedelta  # since the key was published
    signers: list[str]  # hosts signing with it (active keys only)
    next_event: str  # activate | rotate | retire | revoke | withdraw
    next_at: datetime | None  # None: on demand only (a fixed selector)
    warnings: list[str]
    zone: str = ""
    target: str = ""
    slot: str = ""  # the ledger's slot id, e.g. "example.com/shared/rsa"
    name: str = ""  # the record's owner, <selector>._domainkey.<domain>
    verified_via: str = ""  # "nameservers", "backend" (proves less) or "" (nothing verified yet)
    target_type: str = ""  # "bind-file", "route53", …


def bits_of(algorithm: str) -> int:
    """rsa-N → N, ed25519 → 256 (0 when unknown)."""
    if algorithm == "ed25519":
        return 256
    match = re.fullmatch(r"rsa-(\d+)", algorithm or "")
    return int(match.group(1)) if match else 0


def _policy(config: StackConfig, domain: str, slot_id: str,
            slot_policies: Mapping[str, rotation.Policy]) -> rotation.Policy:
    if slot_id in slot_policies:
        return slot_policies[slot_id]
    if domain in config.domains:  # a slot the config no longer declares the same way
        rules = config.rotation_for(domain)
        return rotation.Policy(every=rules.every, publish_ahead=rules.publish_ahead, retain=rules.retain,
                               revoke=rules.revoke, revoke_for=rules.revoke_for)
    return rotation.Policy()


def _zone_via(verification: Iterable[Sequence[str]]) -> dict[str, str]:
    """zone → "nameservers" when any record of it was confirmed by DNS queries, else "backend"."""
    seen: dict[str, set[str]] = {}
    for item in verification or []:
        zone, via = item[0], item[1]
        seen.setdefault(zone, set()).add(via)
    return {zone: gate.VIA_NAMESERVERS if gate.VIA_NAMESERVERS in vias else gate.VIA_BACKEND
            for zone, vias in seen.items()}


def _testing_warning(value: str | None, testing: bool | str) -> str | None:
    """t=y in the published value, unless the domain asks for it with `testing: true`."""
    if not value or testing is True:
        return None
    try:
        flags = dkim_record.parse(value).t
    except dkim_record.RecordError:
        return None
    if "y" not in flags:
        return None
    if testing == "staged":
        return f"{TESTING} (staged: waits until a key of the domain is verified and active)"
    return f"{TESTING} (the domain is not in testing mode: run up to publish without it)"


def status_rows(
    config: StackConfig,
    ledger: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    verification: Iterable[Sequence[str]],
    now: datetime,
    dns_values: Mapping[str, Sequence[str]] | None = None,
    dns_errors: Mapping[str, str] | None = None,
) -> list[StatusRow]:
    """One row per key in the ledger, with its next step and what looks wrong.

    `dns_values` maps a record name to the values DNS holds for it (as the
    gate reads it: nameservers or backend); a name missing from it was not
    looked up. `dns_errors` maps a name to why its lookup failed.
    """
    slot_policies = {slot.resource_name: slot.policy for slot in plan.slots(config)}
    expected = {record["name"]: record["value"] for record in records}
    via_of = _zone_via(verification)
    rows: list[StatusRow] = []
    for slot_id in sorted(ledger):
        item = ledger[slot_id] or {}
        domain = item.get("domain", slot_id.split("/")[0])
        policy = _policy(config, domain, slot_id, slot_policies)
        entries = rotation.SlotLedger.from_list(item.get("keys")).entries
        spec = config.domains.get(domain)
        testing = spec.testing if spec is not None else False
        target = item.get("target", "")
        target_type = config.dns[target].type if target in config.dns else ""
        for entry in entries:
            algorithm = entry.algorithm or item.get("algorithm", "")
            bits = bits_of(algorithm)
            name = f"{entry.selector}._domainkey.{domain}"
            what, when = rotation.next_transition(policy, entries, entry)
            warnings: list[str] = []
            if entry.phase != rotation.REVOKED and algorithm.startswith("rsa") and 0 < bits < 2048:
                warnings.append(WEAK)
            if entry.phase == rotation.ACTIVE and policy.rotates:
                started = entry.activated or entry.published
                if now > started + policy.every + policy.publish_ahead + DAY:
                    warnings.append(f"{OVERDUE} (due {started + policy.every:%Y-%m-%d})")
            if entry.phase == rotation.PUBLISHED and when is not None and now >= when:
                warnings.append(f"{NOT_SERVED} (activation waits on DNS)")
            value = expected.get(name)
            flag = _testing_warning(value, testing)
            if flag and entry.phase != rotation.REVOKED:
                warnings.append(flag)
            if value is not None and dns_errors and name in dns_errors:
                warnings.append(f"{LOOKUP_FAILED}: {dns_errors[name]}")
            elif value is not None and dns_values is not None and name in dns_values \
                    and value not in dns_values[name]:
                warnings.append(f"{DIFFERS} ({_observed(dns_values[name])})")
            rows.append(StatusRow(
                domain=domain, selector=entry.selector, algorithm=algorithm, bits=bits, phase=entry.phase,
                age=max(now - entry.published, timedelta(0)),
                signers=list(item.get("signers") or []) if entry.phase == rotation.ACTIVE else [],
                next_event=_EVENTS.get(what, what),
                next_at=when,
                warnings=warnings, zone=item.get("zone", domain), target=target, slot=slot_id, name=name,
                verified_via=via_of.get(item.get("zone", domain), ""), target_type=target_type,
            ))
    return rows


def _observed(values: Sequence[str]) -> str:
    if not values:
        return "no TXT record served"
    shown = [v if len(v) <= 64 else v[:61] + "..." for v in values]
    return "serves " + ", ".join(repr(v) for v in shown)


def format_age(age: timedelta) -> str:
    """12d, 5h, 3m: the largest whole unit."""
    seconds = int(age.total_seconds())
    if seconds >= 86400:
        return f"{seconds // 86400}d"
    if seconds >= 3600:
        return f"{seconds // 3600}h"
    return f"{seconds // 60}m"


def _next_text(row: StatusRow) -> str:
    if row.next_at is None:
        return f"{row.next_event} on demand" if row.next_event == "retire" else row.next_event
    return f"{row.next_event} {row.next_at:%Y-%m-%d}"


def backend_notes(rows: Iterable[StatusRow]) -> list[str]:
    """One line per zone confirmed only through its backend, not by DNS queries."""
    notes: dict[str, str] = {}
    for row in rows:
        if row.verified_via == gate.VIA_BACKEND and row.zone not in notes:
            what = _BACKEND_WHAT.get(row.target_type, f"the {row.target_type or 'dns target'} API")
            notes[row.zone] = f"{row.zone}: checked through {what}, not by DNS queries (proves less)"
    return [notes[zone] for zone in sorted(notes)]


def render_table(rows: Sequence[StatusRow]) -> str:
    """Aligned columns DOMAIN SELECTOR ALG PHASE AGE SIGNERS NEXT WARNINGS, plus footnotes."""
    if not rows:
        return "no keys yet: run `dkimroll up` first\n"
    header = ("DOMAIN", "SELECTOR", "ALG", "PHASE", "AGE", "SIGNERS", "NEXT", "WARNINGS")
    table = [header] + [
        (row.domain, row.selector, row.algorithm, row.phase, format_age(row.age),
         ",".join(row.signers) or "-", _next_text(row), "; ".join(row.warnings) or "-")
        for row in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header) - 1)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line[:-1], widths)) + "  " + line[-1]
             for line in table]
    lines += backend_notes(rows)
    warned = sum(1 for row in rows if row.warnings)
    lines.append(f"{len(rows)} key(s), {warned} with warnings")
    return "\n".join(lines) + "\n"


def status_json(rows: Sequence[StatusRow]) -> list[dict[str, Any]]:
    """The rows as JSON-ready dicts (times in ISO-8601 UTC, ages in seconds and as text)."""
    return [{
        "domain": row.domain, "selector": row.selector, "name": row.name, "algorithm": row.algorithm,
        "bits": row.bits, "phase": row.phase, "age_seconds": int(row.age.total_seconds()),
        "age": format_age(row.age), "signers": list(row.signers), "next_event": row.next_event,
        "next_at": clock.iso(row.next_at) if row.next_at else None, "warnings": list(row.warnings),
        "zone": row.zone, "target": row.target, "slot": row.slot, "verified_via": row.verified_via or None,
    } for row in rows]


# --- reading DNS the way the gate does ----------------------------------------


class LookupFailed(DkimrollError):
    """A source could not be asked (no answer, no nameservers found, backend error)."""


class Reader(Protocol):
    """Where a zone's records are read: each authoritative nameserver, or the backend."""

    via: str  # gate.VIA_NAMESERVERS or gate.VIA_BACKEND

    def sources(self) -> list[str]:
        """Labels of the places asked, e.g. "127.0.0.1:5300"."""

    def values(self, source: str, name: str, expected: str) -> list[str]:
        """The joined TXT values `source` holds at `name`; raise LookupFailed when it cannot tell."""


class NameserverReader:
    """Asks each authoritative server directly (no recursion, no cache)."""

    via = gate.VIA_NAMESERVERS

    def __init__(self, servers: Sequence[tuple[str, int]], timeout: float = 3.0) -> None:
        self._servers = {f"{host}:{port}": (host, port) for host, port in servers}
        self.timeout = timeout

    def sources(self) -> list[str]:
        return list(self._servers)

    def values(self, source: str, name: str, expected: str) -> list[str]:
        try:
            return dns_verify.txt_values(self._servers[source], name, self.timeout)
        except (dns.exception.DNSException, OSError) as exc:
            raise LookupFailed(f"{source} did not answer ({exc.__class__.__name__})") from None


class BackendReader:
    """Reads back through the DNS target: tells only whether the expected value is there."""

    via = gate.VIA_BACKEND

    def __init__(self, backend: DnsBackend, zone: str, target_type: str = "") -> None:
        self.backend = backend
        self.zone = zone
        what = _BACKEND_WHAT.get(target_type, f"the {target_type or 'dns target'} API")
        self.label = f"{what} of dns target '{backend.name}'"

    def sources(self) -> list[str]:
        return [self.label]

    def values(self, source: str, name: str, expected: str) -> list[str]:
        try:
            held = self.backend.present(self.zone, [TxtRecord(name, expected)])
        except DkimrollError as exc:
            raise LookupFailed(str(exc)) from None
        return [record.value for record in held]


class UnreachableReader:
    """A zone whose nameservers could not even be found: every lookup fails with the reason."""

    via = gate.VIA_NAMESERVERS

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def sources(self) -> list[str]:
        return ["nameservers"]

    def values(self, source: str, name: str, expected: str) -> list[str]:
        raise LookupFailed(self.reason)


def open_reader(target_name: str, settings: Mapping[str, Any], zone: str, timeout: float = 3.0,
                discover: Callable[[str], list[tuple[str, int]]] | None = None) -> Reader:
    """The reader the DNS gate would use for `zone` of a target (settings as for make_dns_backend)."""
    if gate.mode(dict(settings)) == gate.VIA_BACKEND:
        from providers.dns.factory import make_dns_backend

        return BackendReader(make_dns_backend(target_name, dict(settings)), zone, str(settings.get("type", "")))
    configured = settings.get("nameservers") or []
    if configured:
        return NameserverReader(dns_verify.parse_hostports(configured), timeout)
    try:
        if discover is not None:
            servers = discover(zone)
        else:
            resolver = dns.resolver.Resolver()
            resolver.lifetime = timeout
            servers = dns_verify.discover(zone, resolver)
    except (dns.exception.DNSException, OSError) as exc:
        return UnreachableReader(f"cannot find the authoritative nameservers of {zone} ({exc.__class__.__name__})")
    if not servers:
        return UnreachableReader(f"no authoritative nameservers found for {zone}")
    return NameserverReader(servers, timeout)


ReaderFor = Callable[[str, str], Reader]  # (target, zone) → Reader


def observed_values(records: Sequence[Mapping[str, Any]], reader_for: ReaderFor
                    ) -> tuple[dict[str, list[str]], dict[str, str]]:
    """For `status`: (name → values every source agrees on, name → why the lookup failed).

    A value counts only when every source holds it, so a name whose expected
    value is missing from any one nameserver shows as differing.
    """
    values: dict[str, list[str]] = {}
    errors: dict[str, str] = {}
    for record in records:
        name, expected = record["name"], record["value"]
        reader = reader_for(record["target"], record["zone"])
        common: list[str] | None = None
        try:
            for source in reader.sources():
                seen = reader.values(source, name, expected)
                common = list(seen) if common is None else [v for v in common if v in seen]
        except LookupFailed as exc:
            errors[name] = str(exc)
            continue
        values[name] = common or []
    return values, errors


# --- check -------------------------------------------------------------------


@dataclass(frozen=True)
class CheckItem:
    kind: str  # "dns" | "signature"
    domain: str
    selector: str
    ok: bool
    detail: str
    name: str = ""  # the record's owner name
    via: str = ""  # how it was read: "nameservers" or "backend"


@dataclass(frozen=True)
class CheckReport:
    items: list[CheckItem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.items) and all(item.ok for item in self.items)

    @property
    def failures(self) -> list[CheckItem]:
        return [item for item in self.items if not item.ok]


TEST_MESSAGE = (
    "From: dkimroll check <postmaster@{domain}>\r\n"
    "To: postmaster@{domain}\r\n"
    "Subject: dkimroll check of {selector}._domainkey.{domain}\r\n"
    "Date: {date}\r\n"
    "Message-ID: <dkimroll-check.{selector}@{domain}>\r\n"
    "\r\n"
    "A test message signed and verified by dkimroll check; never sent.\r\n"
)


def _owner_parts(name: str) -> tuple[str, str]:
    selector, sep, domain = name.partition("._domainkey.")
    return (selector, domain) if sep else ("", name)


def _dns_item(record: Mapping[str, Any], reader: Reader, domains: Mapping[str, str]) -> CheckItem:
    name, expected = record["name"], record["value"]
    selector, domain = _owner_parts(name)
    domain = domains.get(name, domain)
    problems, fine = [], []
    for source in reader.sources():
        try:
            seen = reader.values(source, name, expected)
        except LookupFailed as exc:
            problems.append(str(exc))
            continue
        if expected in seen:
            fine.append(source)
        elif not seen:
            problems.append(f"{source}: not found" if reader.via == gate.VIA_BACKEND
                            else f"{source} serves no TXT record there")
        else:
            problems.append(f"{source} serves a different value ({_observed(seen).removeprefix('serves ')})")
    if not reader.sources():
        problems.append("no authoritative nameservers to ask")
    if problems:
        detail = "; ".join(problems)
    elif reader.via == gate.VIA_BACKEND:
        detail = f"found in {', '.join(fine)} (no DNS query: proves less)"
    else:
        detail = f"served by {', '.join(fine)}"
    return CheckItem("dns", domain, selector, not problems, detail, name=name, via=reader.via)


def signing_key(pem: str) -> tuple[bytes, bytes]:
    """(key for dkimpy, signature algorithm) from a PKCS#8 PEM: PKCS#1 PEM for RSA, base64 seed for Ed25519."""
    try:
        key = serialization.load_pem_private_key(pem.encode("utf-8"), password=None)
    except (TypeError, ValueError, UnicodeError):
        raise DkimrollError("the stored private key is unreadable") from None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
        return base64.b64encode(raw), b"ed25519-sha256"
    if isinstance(key, rsa.RSAPrivateKey):
        pkcs1 = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption())
        return pkcs1, b"rsa-sha256"
    raise DkimrollError(f"the stored private key has an unsupported type ({type(key).__name__})")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.INFO:
            self.lines.append(record.getMessage())


def _dnsfunc(reader: Reader, source: str, expected: Mapping[str, str]) -> Callable[..., bytes | None]:
    """A dkimpy dnsfunc reading only `source` (one nameserver, or the backend)."""

    def dnsfunc(name: bytes | str, timeout: float = 5) -> bytes | None:
        text = (name.decode("ascii") if isinstance(name, bytes) else name).rstrip(".").lower()
        try:
            values = reader.values(source, text, expected.get(text, ""))
        except LookupFailed as exc:
            raise dkim.DnsTimeoutError(str(exc)) from None
        if not values:
            return None
        dkim_values = [v for v in values if v.lstrip().startswith("v=DKIM1")] or values
        return dkim_values[0].encode("utf-8")

    return dnsfunc


def _signature_item(domain: str, selector: str, pem: str | None, reader: Reader,
                    expected: Mapping[str, str], now: datetime) -> CheckItem:
    name = f"{selector}._domainkey.{domain}"

    def item(ok: bool, detail: str) -> CheckItem:
        return CheckItem("signature", domain, selector, ok, detail, name=name, via=reader.via)

    if pem is None:
        return item(False, "no private key for this selector in the stack's state")
    try:
        key, algorithm = signing_key(pem)
    except DkimrollError as exc:
        return item(False, str(exc))
    message = TEST_MESSAGE.format(domain=domain, selector=selector,
                                  date=now.strftime("%a, %d %b %Y %H:%M:%S +0000")).encode("ascii")
    try:
        signature = dkim.sign(message, selector.encode("ascii"), domain.encode("ascii"), key,
                              signature_algorithm=algorithm)
    except dkim.DKIMException as exc:
        # Only the class name: dkimpy's key parsing errors may quote the input.
        return item(False, f"signing the test message failed ({type(exc).__name__})")
    signed = signature + message
    problems, fine = [], []
    for source in reader.sources():
        collect = _Collect()
        logger = logging.getLogger(f"{__name__}.dkimpy")
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        logger.addHandler(collect)
        try:
            verified = dkim.verify(signed, logger=logger, dnsfunc=_dnsfunc(reader, source, expected))
        finally:
            logger.removeHandler(collect)
        if verified:
            fine.append(source)
        else:
            reason = "; ".join(collect.lines) or "the published key does not match the signing key"
            problems.append(f"does not verify against {source}: {reason}")
    if not reader.sources():
        problems.append("no authoritative nameservers to verify against")
    alg = algorithm.decode()
    if problems:
        return item(False, f"{alg} signature " + "; ".join(problems))
    return item(True, f"{alg} signature verifies against {', '.join(fine)}")


def check(
    ledger: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    private_keys: Mapping[tuple[str, str], str],
    reader_for: ReaderFor,
    now: datetime | None = None,
) -> CheckReport:
    """Compare every published record with DNS, then sign and verify a message with every active key.

    `private_keys` maps (domain, selector) to the PKCS#8 PEM; `reader_for(target, zone)`
    gives the reader of a zone (see `open_reader`), called once per zone.
    """
    now = now or clock.now()
    readers: dict[tuple[str, str], Reader] = {}

    def reader(target: str, zone: str) -> Reader:
        if (target, zone) not in readers:
            readers[(target, zone)] = reader_for(target, zone)
        return readers[(target, zone)]

    domains = {}
    for item in ledger.values():
        for key in (item or {}).get("keys") or []:
            domains[f"{key['selector']}._domainkey.{item['domain']}"] = item["domain"]
    expected = {record["name"]: record["value"] for record in records}
    items = [_dns_item(record, reader(record["target"], record["zone"]), domains)
             for record in sorted(records, key=lambda r: r["name"])]
    for slot_id in sorted(ledger):
        item = ledger[slot_id] or {}
        for entry in rotation.SlotLedger.from_list(item.get("keys")).entries:
            if entry.phase != rotation.ACTIVE:
                continue
            domain = item["domain"]
            items.append(_signature_item(domain, entry.selector, private_keys.get((domain, entry.selector)),
                                         reader(item["target"], item["zone"]), expected, now))
    return CheckReport(items)


def render_check(report: CheckReport) -> str:
    """One line per item (OK/FAIL, kind, record, detail) and a summary line."""
    if not report.items:
        return "nothing to check: the stack publishes no records yet (run `dkimroll up` first)\n"
    width = max(len(item.name or item.domain) for item in report.items)
    lines = [f"{'OK  ' if item.ok else 'FAIL'}  {item.kind:<9}  {(item.name or item.domain):<{width}}  {item.detail}"
             for item in report.items]
    backend = sorted({item.domain for item in report.items if item.via == gate.VIA_BACKEND})
    if backend:
        lines.append("read through the DNS target, not by DNS queries (proves less): " + ", ".join(backend))
    failed = len(report.failures)
    lines.append(f"check: {len(report.items) - failed} ok, {failed} failed" + ("" if failed else ", all good"))
    return "\n".join(lines) + "\n"
