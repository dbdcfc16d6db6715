"""A DNS target that writes through RFC 2136 dynamic updates signed with TSIG (RFC 8945).

Works with any primary that accepts signed UPDATE messages: BIND, Knot,
PowerDNS, Windows DNS. All traffic goes to the configured primary directly,
over TCP, never through a resolver:

* reads are plain TXT queries, one per distinct owner name;
* a change is ONE signed UPDATE message per `apply` (one atomic transaction on
  the server, one SOA serial bump), holding a `delete` of exactly each TXT
  rdata to withdraw, as the server holds it, and an `add` of each new value.
  Values already present (or already absent) are skipped, so re-applying the
  same change sends nothing at all.

Other TXT values at the same owner (SPF, verification tokens) are never named
in the message, so the server leaves them alone. Values are compared by their
joined, unescaped text: a value the server holds with different chunk
boundaries counts as present, and is deleted in the exact form it is held.

TSIG secrets never appear in messages, `repr` or errors.
"""

from __future__ import annotations

import base64
import binascii
import socket
from typing import Sequence

import dns.exception
import dns.flags
import dns.inet
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.tsig
import dns.update

from keys import chunking
from providers.dns.base import TxtRecord, record_problems
from providers.errors import ConfigError, DnsTargetError

__all__ = ["Rfc2136Target", "TSIG_ALGORITHMS"]

MAX_RDATA_OCTETS = 65535  # one RDATA: the strings plus one length octet each

# Names dnspython and BIND both know; the key of the mapping is what the stack file says.
TSIG_ALGORITHMS: dict[str, dns.name.Name] = {
    "hmac-md5": dns.tsig.HMAC_MD5,
    "hmac-sha1": dns.tsig.HMAC_SHA1,
    "hmac-sha224": dns.tsig.HMAC_SHA224,
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
}

_TSIG_HINT = "check tsig_name / tsig_secret / tsig_algorithm"

_RCODE_HINTS = {
    dns.rcode.NOTAUTH: "the server is not authoritative for the zone, or does not accept this TSIG key for it",
    dns.rcode.REFUSED: "the server refused the update (check its allow-update / update-policy for this key and zone)",
    dns.rcode.SERVFAIL: "the server failed to apply the update (see its log)",
    dns.rcode.NOTZONE: "a record name is not within the zone",
    dns.rcode.FORMERR: "the server could not parse the update message",
    dns.rcode.NOTIMP: "the server does not implement dynamic updates",
}


class Rfc2136Target:
    """DKIM TXT records on a primary that accepts RFC 2136 updates (optionally TSIG-signed).

    `server` is an IP address or a host name (resolved on each call). Without
    `tsig_name` the updates go unsigned, for servers that authorise by address.
    """

    def __init__(
        self,
        name: str,
        server: str,
        port: int = 53,
        tsig_name: str | None = None,
        tsig_secret: str | None = None,
        tsig_algorithm: str = "hmac-sha256",
        timeout: float = 10.0,
    ) -> None:
        key = f"dkimroll:dns.{name}"
        if not isinstance(server, str) or not server.strip():
            raise ConfigError(f"{key}.server", "must name the primary server (an IP address or host name)")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ConfigError(f"{key}.port", f"must be an integer from 1 to 65535, got {port!r}")
        algorithm = (tsig_algorithm or "").strip().lower().rstrip(".")
        if algorithm not in TSIG_ALGORITHMS:
            raise ConfigError(
                f"{key}.tsig_algorithm", f"unknown algorithm {tsig_algorithm!r}; use one of {', '.join(TSIG_ALGORITHMS)}"
            )
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ConfigError(f"{key}.timeout", f"must be a positive number of seconds, got {timeout!r}")
        if tsig_name is not None:
            try:
                dns.name.from_text(tsig_name)
            except dns.exception.DNSException as exc:
                raise ConfigError(f"{key}.tsig_name", f"{tsig_name!r} is not a valid key name: {exc}") from None
        self.name = name
        self.server = server.strip()
        self.port = port
        self.tsig_name = tsig_name or None
        self._tsig_secret = tsig_secret or None
        self.tsig_algorithm = algorithm
        self.timeout = float(timeout)

    def __repr__(self) -> str:
        secret = "<set>" if self._tsig_secret else None
        return (
            f"Rfc2136Target(name={self.name!r}, server={self.server!r}, port={self.port}, "
            f"tsig_name={self.tsig_name!r}, tsig_secret={secret!r}, tsig_algorithm={self.tsig_algorithm!r})"
        )

    @property
    def endpoint(self) -> str:
        host = f"[{self.server}]" if ":" in self.server else self.server
        return f"{host}:{self.port}"

    # -- protocol

    def check(self, zone: str, records: Sequence[TxtRecord]) -> list[str]:
        """Names, TTLs and sizes valid; TSIG configured; the server answers for the zone with AA set."""
        try:
            origin = _zone_name(zone)
        except ValueError as exc:
            return [str(exc)]
        zone_text = _text(origin)
        problems = _record_problems(zone_text, records)
        tsig_problem = self._tsig_problem()
        if tsig_problem:
            problems.append(tsig_problem)
        try:
            self._require_authoritative(origin)
        except DnsTargetError as exc:
            problems.append(exc.detail)
        return problems

    def present(self, zone: str, records: Sequence[TxtRecord]) -> list[TxtRecord]:
        """The records whose joined value the server holds at their name (one TCP query per name)."""
        zone_text = self._zone_text(zone)
        held: dict[str, set[str]] = {}
        for owner in sorted({_normal(r.name) for r in records}):
            held[owner] = {chunking.join(rdata.strings) for rdata in self._txt_rdatas(zone_text, owner)}
        return [r for r in records if r.value in held[_normal(r.name)]]

    def apply(self, zone: str, add: Sequence[TxtRecord], remove: Sequence[TxtRecord]) -> bool:
        """One signed UPDATE with the deletes and adds still needed; False (nothing sent) if none are."""
        zone_text = self._zone_text(zone)
        problems = _record_problems(zone_text, [*add, *remove])
        tsig_problem = self._tsig_problem()
        if tsig_problem:
            problems.append(tsig_problem)
        if problems:
            raise DnsTargetError(self.name, zone_text, "; ".join(problems))

        keep = {(_normal(r.name), r.value) for r in add}
        owners = sorted({_normal(r.name) for r in (*add, *remove)})
        current = {owner: self._txt_rdatas(zone_text, owner) for owner in owners}

        update = self._new_update(zone_text)
        changes = 0
        deleted: set[tuple[str, bytes]] = set()
        for record in remove:
            owner = _normal(record.name)
            if (owner, record.value) in keep:
                continue  # added and removed in one change: it stays
            for rdata in current[owner]:
                wire = b"\0".join(rdata.strings)
                if chunking.join(rdata.strings) == record.value and (owner, wire) not in deleted:
                    update.delete(dns.name.from_text(owner), rdata)
                    deleted.add((owner, wire))
                    changes += 1
        added: set[tuple[str, str]] = set()
        for record in add:
            owner = _normal(record.name)
            held = {chunking.join(rdata.strings) for rdata in current[owner]}
            if record.value in held or (owner, record.value) in added:
                continue
            rdata = dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunking.chunk(record.value))
            update.add(dns.name.from_text(owner), record.ttl, rdata)
            added.add((owner, record.value))
            changes += 1
        if not changes:
            return False
        self._send_update(zone_text, update)
        return True

    # -- traffic

    def _address(self, zone: str) -> str:
        """The server's address; a host name is resolved now (never cached, never via a stale answer)."""
        try:
            dns.inet.af_for_address(self.server)
            return self.server
        except ValueError:
            pass
        try:
            infos = socket.getaddrinfo(self.server, self.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise DnsTargetError(self.name, zone, f"cannot resolve server {self.server}: {exc}") from None
        return str(infos[0][4][0])

    def _tcp(self, zone: str, message: dns.message.Message, what: str) -> dns.message.Message:
        address = self._address(zone)
        try:
            return dns.query.tcp(message, address, timeout=self.timeout, port=self.port)
        except dns.tsig.PeerBadTime:
            raise DnsTargetError(
                self.name,
                zone,
                f"TSIG key rejected by server {self.endpoint}: clock skew (BADTIME); check this host's clock",
            ) from None
        except (dns.tsig.PeerError, dns.tsig.BadSignature, dns.tsig.BadTime, dns.tsig.BadAlgorithm, dns.tsig.BadKey) as exc:
            raise DnsTargetError(
                self.name,
                zone,
                f"TSIG key rejected by server {self.endpoint} ({_TSIG_HINT}): {_tsig_reason(exc)}",
            ) from None
        except dns.message.UnknownTSIGKey:
            raise DnsTargetError(
                self.name, zone, f"the server {self.endpoint} signed its answer with a TSIG key we do not hold"
            ) from None
        except dns.exception.Timeout:
            raise DnsTargetError(
                self.name, zone, f"{what}: no answer from server {self.endpoint} within {self.timeout:g}s"
            ) from None
        except (OSError, EOFError) as exc:
            raise DnsTargetError(self.name, zone, f"{what}: cannot reach server {self.endpoint}: {exc}") from None
        except dns.exception.DNSException as exc:
            raise DnsTargetError(self.name, zone, f"{what}: bad answer from server {self.endpoint}: {exc}") from None

    def _query(self, zone: str, owner: str, rdtype: dns.rdatatype.RdataType) -> dns.message.Message:
        query = dns.message.make_query(owner, rdtype)
        query.flags &= ~dns.flags.RD
        return self._tcp(zone, query, f"{dns.rdatatype.to_text(rdtype)} query for {owner}")

    def _txt_rdatas(self, zone: str, owner: str) -> list[dns.rdtypes.ANY.TXT.TXT]:
        """Every TXT rdata the server holds at `owner` (empty for NXDOMAIN / NODATA)."""
        response = self._query(zone, owner, dns.rdatatype.TXT)
        rcode = response.rcode()
        if rcode == dns.rcode.NXDOMAIN:
            return []
        if rcode in (dns.rcode.REFUSED, dns.rcode.NOTAUTH):
            raise DnsTargetError(
                self.name,
                zone,
                f"zone {zone} not served by {self.endpoint} (TXT query answered {dns.rcode.to_text(rcode)})",
                record=owner,
            )
        if rcode != dns.rcode.NOERROR:
            raise DnsTargetError(
                self.name,
                zone,
                f"server {self.endpoint} answered {dns.rcode.to_text(rcode)} to the TXT query",
                record=owner,
            )
        qname = dns.name.from_text(owner)
        found: list[dns.rdtypes.ANY.TXT.TXT] = []
        for rrset in response.answer:
            if rrset.name == qname and rrset.rdtype == dns.rdatatype.TXT:
                found.extend(rrset)
        return found

    def _require_authoritative(self, origin: dns.name.Name) -> None:
        zone = _text(origin)
        response = self._query(zone, zone, dns.rdatatype.SOA)
        soa = any(rrset.name == origin and rrset.rdtype == dns.rdatatype.SOA for rrset in response.answer)
        if response.rcode() != dns.rcode.NOERROR or not response.flags & dns.flags.AA or not soa:
            answer = dns.rcode.to_text(response.rcode())
            if response.rcode() == dns.rcode.NOERROR:
                answer += ", not authoritative" if not response.flags & dns.flags.AA else ", no SOA"
            raise DnsTargetError(self.name, zone, f"zone {zone} not served by {self.endpoint} (SOA query: {answer})")

    def _new_update(self, zone: str) -> dns.update.UpdateMessage:
        if not self.tsig_name:
            return dns.update.UpdateMessage(zone)
        keyring = {dns.name.from_text(self.tsig_name): self._tsig_key()}
        return dns.update.UpdateMessage(
            zone,
            keyring=keyring,
            keyname=dns.name.from_text(self.tsig_name),
            keyalgorithm=TSIG_ALGORITHMS[self.tsig_algorithm],
        )

    def _send_update(self, zone: str, update: dns.update.UpdateMessage) -> None:
        response = self._tcp(zone, update, "UPDATE")
        rcode = response.rcode()
        if rcode == dns.rcode.NOERROR:
            return
        detail = f"server {self.endpoint} rejected the update: {dns.rcode.to_text(rcode)}"
        tsig_error = getattr(response, "tsig_error", 0)
        if tsig_error:
            detail += f" (TSIG {dns.rcode.to_text(tsig_error)}; {_TSIG_HINT})"
        hint = _RCODE_HINTS.get(rcode)
        if hint:
            detail += f": {hint}"
        raise DnsTargetError(self.name, zone, detail + "; nothing was changed")

    # -- configuration

    def _tsig_problem(self) -> str | None:
        if self.tsig_name and not self._tsig_secret:
            return f"tsig_secret is not set for TSIG key {self.tsig_name} (set it as a secret: dkimroll:dns.{self.name}.tsig_secret)"
        if self._tsig_secret and not self.tsig_name:
            return f"tsig_secret is set but tsig_name is not (dkimroll:dns.{self.name}.tsig_name)"
        if self.tsig_name:
            try:
                self._tsig_key()
            except ValueError as exc:
                return str(exc)
        return None

    def _tsig_key(self) -> dns.tsig.Key:
        secret = self._tsig_secret or ""
        try:
            raw = base64.b64decode(secret.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"tsig_secret of key {self.tsig_name} is not valid base64") from None
        if not raw:
            raise ValueError(f"tsig_secret of key {self.tsig_name} is empty")
        return dns.tsig.Key(self.tsig_name, raw, TSIG_ALGORITHMS[self.tsig_algorithm])

    def _zone_text(self, zone: str) -> str:
        try:
            return _text(_zone_name(zone))
        except ValueError as exc:
            raise DnsTargetError(self.name, str(zone), str(exc)) from None


# --- helpers ----------------------------------------------------------------------


def _zone_name(zone: str) -> dns.name.Name:
    try:
        origin = dns.name.from_text(zone)
    except dns.exception.DNSException as exc:
        raise ValueError(f"zone {zone!r} is not a valid DNS name: {exc}") from None
    if origin == dns.name.root:
        raise ValueError("the root zone cannot hold DKIM records")
    return origin


def _text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


def _normal(name: str) -> str:
    return _text(dns.name.from_text(name))


def _record_problems(zone: str, records: Sequence[TxtRecord]) -> list[str]:
    problems = record_problems(zone, records)
    for record in records:
        strings = chunking.chunk(record.value)
        size = sum(len(s) + 1 for s in strings)
        if size > MAX_RDATA_OCTETS:
            problems.append(f"record {record.name}: value is too long for one TXT record ({size} octets of RDATA)")
    return problems


def _tsig_reason(exc: Exception) -> str:
    if isinstance(exc, dns.tsig.PeerBadKey):
        return "the server does not know this key name (BADKEY)"
    if isinstance(exc, dns.tsig.PeerBadSignature):
        return "the signature did not verify (BADSIG): wrong secret or algorithm"
    if isinstance(exc, dns.tsig.PeerBadTruncation):
        return "bad truncation (BADTRUNC)"
    if isinstance(exc, dns.tsig.BadSignature):
        return "the server's answer did not verify with our key"
    return type(exc).__name__
