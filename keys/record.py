"""Build and parse DKIM key records (RFC 6376 §3.6.1), the text published at `<sel>._domainkey`.

One renderer with a fixed tag order means the value we publish is a pure
function of the key, so re-runs never see a spurious diff; the parser reads
what is live in DNS (possibly written by other tools) as a verifier would.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from providers import errors

VERSION = "DKIM1"
_FWS = " \t\r\n"
# RFC 6376 says ALPHA *(ALPHA / DIGIT / "_"); like dkimpy we accept any printable run
# after the letter, so an odd unknown tag such as "x-future" is ignored, not fatal.
_TAG_NAME = re.compile(r"[A-Za-z][!-~]*")
_WORD = re.compile(r"[A-Za-z](?:[A-Za-z0-9-]*[A-Za-z0-9])?")  # RFC 6376 hyphenated-word
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_WHITESPACE = re.compile(r"[ \t\r\n]+")


class RecordError(errors.DkimrollError):
    """A DKIM key record is malformed."""


class RecordParseError(RecordError):
    """Text read as a DKIM key record does not follow RFC 6376 §3.6.1."""


class RecordBuildError(RecordError):
    """A DkimRecord holds values that cannot be rendered as a valid record."""


@dataclass(frozen=True)
class DkimRecord:
    """The tags of a DKIM key record. An empty `p` means the key is revoked."""

    k: str = "rsa"
    p: str = ""
    h: tuple[str, ...] = ()
    s: tuple[str, ...] = ()
    t: tuple[str, ...] = ()
    n: str | None = None
    v: str = VERSION

    @property
    def revoked(self) -> bool:
        """True when `p=` is empty: RFC 6376 says such a key has been revoked."""
        return self.p == ""


def build(rec: DkimRecord) -> str:
    """Render `rec` as `v=DKIM1; k=...; [h=...;] [s=...;] [t=...;] [n=...;] p=...`."""
    problems = _problems(rec)
    if problems:
        raise RecordBuildError("cannot build DKIM record: " + "; ".join(problems))
    parts = [f"v={rec.v}", f"k={rec.k}"]
    for tag, values in (("h", rec.h), ("s", rec.s), ("t", rec.t)):
        if values:
            parts.append(f"{tag}={':'.join(values)}")
    if rec.n is not None:
        parts.append(f"n={rec.n}")
    parts.append(f"p={rec.p}")
    return "; ".join(parts)


def parse(text: str) -> DkimRecord:
    """Read a joined TXT value as a DKIM key record, tolerating FWS and ignoring unknown tags."""
    tags = _tag_list(text)
    if "v" in tags:
        if next(iter(tags)) != "v":
            raise RecordParseError("v= must be the first tag of a DKIM key record")
        if tags["v"] != VERSION:
            raise RecordParseError(f"v= must be {VERSION!r}, found {tags['v']!r}")
    if "p" not in tags:
        raise RecordParseError("missing required tag p=")
    rec = DkimRecord(
        k=tags.get("k", "rsa"),
        p=_WHITESPACE.sub("", tags["p"]),
        h=_colon_list(tags.get("h")),
        s=_colon_list(tags.get("s")),
        t=_colon_list(tags.get("t")),
        n=tags.get("n"),
    )
    problems = _problems(rec)
    if problems:
        raise RecordParseError("invalid DKIM key record: " + "; ".join(problems))
    return rec


def _tag_list(text: str) -> dict[str, str]:
    """Split an RFC 6376 §3.2 tag-list into an ordered dict, rejecting duplicates."""
    specs = text.strip(_FWS).split(";")
    if specs[-1].strip(_FWS) == "":
        specs.pop()  # a trailing ";" is allowed
    tags: dict[str, str] = {}
    for position, spec in enumerate(specs, start=1):
        name, sep, value = spec.partition("=")
        name = name.strip(_FWS)
        if not sep:
            raise RecordParseError(f"tag {position} ({spec.strip(_FWS)[:20]!r}) has no '='")
        if not _TAG_NAME.fullmatch(name):
            raise RecordParseError(f"tag {position} has an invalid name {name!r}")
        if name in tags:
            raise RecordParseError(f"duplicate tag {name}=")
        tags[name] = value.strip(_FWS)
    return tags


def _colon_list(value: str | None) -> tuple[str, ...]:
    """A colon-separated tag value as a tuple, FWS around the colons removed."""
    if value is None or value == "":
        return ()
    return tuple(item.strip(_FWS) for item in value.split(":"))


def _problems(rec: DkimRecord) -> list[str]:
    """Every reason `rec` is not a valid record; shared so build and parse agree exactly."""
    problems: list[str] = []
    if rec.v != VERSION:
        problems.append(f"v= must be {VERSION!r}, not {rec.v!r}")
    if not _WORD.fullmatch(rec.k):
        problems.append(f"k= {rec.k!r} is not a key type name")
    for tag, values in (("h", rec.h), ("s", rec.s), ("t", rec.t)):
        for item in values:
            if not (_WORD.fullmatch(item) or (tag == "s" and item == "*")):
                problems.append(f"{tag}= entry {item!r} is not a valid name")
    if rec.n is not None:
        problems.extend(_note_problems(rec.n))
    problems.extend(_p_problems(rec.p))
    return problems


def _note_problems(note: str) -> list[str]:
    """n= is free text, but must not end the tag early or lose edge whitespace on a re-parse."""
    if ";" in note:
        return ["n= must not contain ';'"]
    if note != note.strip(_FWS):
        return ["n= must not start or end with whitespace"]
    if any(not (ch == " " or ch == "\t" or 0x21 <= ord(ch) <= 0x7E) for ch in note):
        return ["n= must be printable ASCII"]
    return []


def _p_problems(p: str) -> list[str]:
    """p= must be clean base64 so every verifier decodes the same key."""
    if not _BASE64.fullmatch(p):
        return ["p= contains characters outside base64"]
    if len(p) % 4:
        return ["p= is not valid base64 (length is not a multiple of 4)"]
    try:
        base64.b64decode(p, validate=True)
    except binascii.Error:
        return ["p= is not valid base64 (bad length or padding)"]
    return []
