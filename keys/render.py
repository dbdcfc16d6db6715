"""Render a joined TXT value as DNS presentation text and as a zone-file RR line.

Rendering is the only place chunks are escaped, so the octets we chunk are the
octets a resolver returns. Every string is quoted: an unquoted `;` would start
a zone-file comment and silently truncate a DKIM record.
"""

from __future__ import annotations

import dns.exception
import dns.name

from keys import chunking
from providers import errors

MAX_TTL = 2**31 - 1  # RFC 2181 §8


def quote(octets: bytes, octal: bool = False) -> str:
    """One character-string, quoted, `"`/`\\` escaped, other non-printables as `\\DDD`
    (decimal, RFC 1035 presentation format) or, with `octal`, `\\ooo` (Route53's text form)."""
    out: list[str] = []
    for byte in octets:
        if byte in (0x22, 0x5C):
            out.append("\\" + chr(byte))
        elif 0x20 <= byte <= 0x7E:
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03o}" if octal else f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def presentation(value: str, octal: bool = False) -> str:
    """The value's <=255-octet chunks quoted and space-joined, in one record's RDATA text."""
    return " ".join(quote(piece, octal) for piece in chunking.chunk(value))


def zone_file(owner: str, ttl: int, value: str) -> str:
    """One RR as zone-file text (no trailing newline); several chunks span lines in parentheses."""
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= MAX_TTL:
        raise errors.ConfigError("ttl", f"must be an integer from 0 to {MAX_TTL}, got {ttl!r}")
    head = f"{_absolute(owner)} {ttl} IN TXT"
    strings = [quote(piece) for piece in chunking.chunk(value)]
    if len(strings) == 1:
        return f"{head} {strings[0]}"
    return f"{head} ( " + "\n\t".join(strings) + " )"


def _absolute(owner: str) -> str:
    """The owner as absolute presentation text with its trailing dot."""
    try:
        name = dns.name.from_text(owner, origin=dns.name.root)
    except dns.exception.DNSException as exc:
        raise errors.ConfigError("owner", f"{owner!r} is not a valid DNS name: {exc}") from None
    if name == dns.name.root:
        raise errors.ConfigError("owner", "the root name cannot hold a DKIM record")
    return name.to_text()
