"""Verify DKIM signatures with dkimpy against the *test* nameserver only.

Usage::

    from tests.infra.dkimverify import verify

    results = verify(signed_message, named)      # named: NamedServer
    assert results == [(True, "sel", "example.test")]
    ok, selector, domain = results[0]
    results[0].reason                             # "" or why it failed

Key lookups go straight to ``server.address:server.port`` with dnspython;
the system resolver (/etc/resolv.conf) is never consulted.
"""

from __future__ import annotations

import logging
from typing import Optional, Protocol

import dkim
import dkim.util
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype


class _Server(Protocol):
    address: str
    port: int


class DkimResult(tuple):
    """``(ok, selector, domain)`` -- compares equal to a plain 3-tuple --
    plus a ``.reason`` attribute (empty when ok)."""

    reason: str

    def __new__(cls, ok: bool, selector: str, domain: str, reason: str = "") -> "DkimResult":
        self = super().__new__(cls, (bool(ok), selector, domain))
        self.reason = reason
        return self

    @property
    def ok(self) -> bool:
        return self[0]

    @property
    def selector(self) -> str:
        return self[1]

    @property
    def domain(self) -> str:
        return self[2]

    def __repr__(self) -> str:
        extra = f", reason={self.reason!r}" if self.reason else ""
        return f"DkimResult(ok={self.ok}, selector={self.selector!r}, domain={self.domain!r}{extra})"


def make_dnsfunc(server: _Server, *, tcp_fallback: bool = True):
    """A dkimpy ``dnsfunc(name: bytes, timeout=5) -> bytes | None`` bound to
    ``server``: the TXT strings of the first TXT rdata joined together, or
    None for NXDOMAIN / no TXT.  Raises ``dkim.DnsTimeoutError`` on timeout
    and on SERVFAIL/REFUSED (so a broken test server is not mistaken for
    "no key")."""

    def dnsfunc(name: "bytes | str", timeout: float = 5) -> Optional[bytes]:
        qname_text = name.decode("ascii") if isinstance(name, bytes) else name
        qname = dns.name.from_text(qname_text)
        q = dns.message.make_query(qname, dns.rdatatype.TXT)
        q.flags &= ~dns.flags.RD
        try:
            if tcp_fallback:
                resp, _ = dns.query.udp_with_fallback(
                    q, server.address, timeout=timeout, port=server.port)
            else:
                resp = dns.query.udp(q, server.address, timeout=timeout, port=server.port)
        except dns.exception.Timeout as exc:
            raise dkim.DnsTimeoutError(f"timeout querying {qname} at "
                                       f"{server.address}:{server.port}: {exc}") from exc
        rc = resp.rcode()
        if rc == dns.rcode.NXDOMAIN:
            return None
        if rc != dns.rcode.NOERROR:
            raise dkim.DnsTimeoutError(f"{dns.rcode.to_text(rc)} for TXT {qname} from "
                                       f"{server.address}:{server.port}")
        for rrset in resp.answer:
            if rrset.rdtype == dns.rdatatype.TXT and rrset.name == qname:
                for rdata in rrset:
                    return b"".join(rdata.strings)
        return None

    return dnsfunc


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.INFO:
            self.lines.append(record.getMessage())


def _signature_tags(message: bytes) -> list[tuple[str, str]]:
    """(selector, domain) for each DKIM-Signature header, top to bottom."""
    headers, _body = dkim.rfc822_parse(message)
    out: list[tuple[str, str]] = []
    for name, value in headers:
        if name.lower() != b"dkim-signature":
            continue
        try:
            tags = dkim.util.parse_tag_value(value)
        except Exception:  # malformed header: still report a (failed) result
            tags = {}
        out.append((tags.get(b"s", b"").decode("ascii", "replace"),
                    tags.get(b"d", b"").decode("ascii", "replace")))
    return out


def verify(message: bytes, server: _Server, *, timeout: float = 5.0,
           minkey: int = 1024) -> list[DkimResult]:
    """Verify every DKIM-Signature in ``message``; one result per signature,
    top-most first.  Exceptions from dkimpy (bad body hash, malformed
    signature, unusable key ...) become ``ok=False`` with ``.reason`` set.
    An unsigned message yields ``[]``."""
    if isinstance(message, str):
        message = message.encode("utf-8")
    dnsfunc = make_dnsfunc(server)
    results: list[DkimResult] = []
    for idx, (selector, domain) in enumerate(_signature_tags(message)):
        collect = _Collect()
        logger = logging.getLogger(f"{__name__}.dkimpy")
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        logger.addHandler(collect)
        try:
            d = dkim.DKIM(message, logger=logger, timeout=timeout, minkey=minkey)
            try:
                ok = bool(d.verify(idx=idx, dnsfunc=dnsfunc))
                reason = "" if ok else ("; ".join(collect.lines) or "signature did not verify")
            except dkim.DKIMException as exc:
                ok, reason = False, f"{type(exc).__name__}: {exc}"
        finally:
            logger.removeHandler(collect)
        results.append(DkimResult(ok, selector, domain, reason))
    return results


__all__ = ["verify", "make_dnsfunc", "DkimResult"]
