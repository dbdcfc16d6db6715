"""Split a TXT value into <=255-octet character-strings of ONE record, and join them back.

DNS caps each character-string at 255 octets; a DKIM key longer than that is
published as several strings of the same RR, which verifiers concatenate.
We chunk raw octets (never escaped text), so an escape can never be split.
"""

from __future__ import annotations

from typing import Iterable

MAX_STRING_OCTETS = 255
# surrogateescape: any octets read from DNS survive join() -> chunk() unchanged,
# so a foreign non-UTF-8 TXT value compares unequal instead of crashing.
_ERRORS = "surrogateescape"


def chunk(value: str, limit: int = MAX_STRING_OCTETS) -> tuple[bytes, ...]:
    """The UTF-8 octets of `value` in strings of at most `limit` octets; "" gives (b"",).

    A cut is moved back to a character boundary when possible, so a multi-byte
    character stays whole in one string (joining would be correct either way).
    """
    if not 1 <= limit <= MAX_STRING_OCTETS:
        raise ValueError(f"limit must be between 1 and {MAX_STRING_OCTETS}, got {limit}")
    data = value.encode("utf-8", _ERRORS)
    if not data:
        return (b"",)
    pieces: list[bytes] = []
    start = 0
    while start < len(data):
        end = min(start + limit, len(data))
        end = _char_boundary(data, start, end)
        pieces.append(data[start:end])
        start = end
    return tuple(pieces)


def join(strings: Iterable[bytes]) -> str:
    """The value a verifier sees: the character-strings concatenated, decoded as UTF-8."""
    return b"".join(strings).decode("utf-8", _ERRORS)


def _char_boundary(data: bytes, start: int, end: int) -> int:
    """Move `end` back off UTF-8 continuation bytes, unless that would leave an empty string."""
    if end == len(data):
        return end
    cut = end
    while cut > start and data[cut] & 0xC0 == 0x80:
        cut -= 1
    return cut if cut > start else end
