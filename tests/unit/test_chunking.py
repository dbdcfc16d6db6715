"""TXT chunking and rendering: chunks fit, join back, and dnspython reads our text as the same value."""

from __future__ import annotations

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.zone
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keys import chunking, render
from providers import errors

# Printable ASCII weighted towards the characters that break naive quoting.
_ascii = st.text(
    alphabet=st.sampled_from('";\\ ()$@') | st.characters(min_codepoint=0x20, max_codepoint=0x7E),
    max_size=4000,
)
VALUES = _ascii | st.text(max_size=4000)

ZONE_HEAD = (
    "$ORIGIN example.com.\n"
    "@ 3600 IN SOA ns1.example.com. hostmaster.example.com. 1 7200 900 1209600 300\n"
    "@ 3600 IN NS ns1.example.com.\n"
)


def _parse_presentation(text: str) -> tuple[bytes, ...]:
    rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, text)
    return tuple(rdata.strings)


# --- chunk / join --------------------------------------------------------------


def test_empty_value_is_one_empty_string() -> None:
    assert chunking.chunk("") == (b"",)
    assert chunking.join((b"",)) == ""
    assert render.presentation("") == '""'


def test_exact_boundaries() -> None:
    assert chunking.chunk("a" * 255) == (b"a" * 255,)
    assert chunking.chunk("a" * 256) == (b"a" * 255, b"a")
    assert chunking.chunk("a" * 510) == (b"a" * 255, b"a" * 255)


def test_custom_limit_and_bad_limit() -> None:
    assert chunking.chunk("abcdefg", limit=3) == (b"abc", b"def", b"g")
    for bad in (0, 256, -1):
        with pytest.raises(ValueError):
            chunking.chunk("x", limit=bad)


def test_multibyte_character_not_split_when_avoidable() -> None:
    value = "a" * 254 + "\u00e9" + "b"  # é is two octets and would straddle the 255 boundary
    pieces = chunking.chunk(value)
    assert pieces == (b"a" * 254, "\u00e9b".encode())
    assert chunking.join(pieces) == value
    # With a limit smaller than one character the octets are still split, and still join back.
    assert chunking.join(chunking.chunk("\U0001f511", limit=1)) == "\U0001f511"


def test_join_survives_foreign_non_utf8() -> None:
    raw = (b"v=DKIM1; \xff\xfe", b"\x80")
    value = chunking.join(raw)
    assert b"".join(chunking.chunk(value)) == b"".join(raw)


@settings(max_examples=200, deadline=None)
@given(VALUES)
def test_chunks_fit_and_join_back(value: str) -> None:
    pieces = chunking.chunk(value)
    assert pieces
    assert all(len(piece) <= 255 for piece in pieces)
    assert all(piece for piece in pieces) or pieces == (b"",)
    assert chunking.join(pieces) == value


# --- quote / presentation ------------------------------------------------------


def test_quote_escapes() -> None:
    assert render.quote(b'a"b\\c;d') == '"a\\"b\\\\c;d"'
    assert render.quote(b"\x00\x1f\x7f\xff") == '"\\000\\031\\127\\255"'
    assert render.quote(b"") == '""'


def test_presentation_splits_long_dkim_value() -> None:
    value = "v=DKIM1; k=rsa; p=" + "A" * 392
    text = render.presentation(value)
    assert text == '"v=DKIM1; k=rsa; p=' + "A" * 237 + '" "' + "A" * 155 + '"'


@settings(max_examples=200, deadline=None)
@given(VALUES)
def test_presentation_round_trips_through_dnspython(value: str) -> None:
    strings = _parse_presentation(render.presentation(value))
    assert strings == chunking.chunk(value)
    assert chunking.join(strings) == value


# --- zone_file ----------------------------------------------------------------


def test_zone_file_single_and_multi_line() -> None:
    assert render.zone_file("sel._domainkey.example.com", 300, "v=DKIM1; p=") == (
        'sel._domainkey.example.com. 300 IN TXT "v=DKIM1; p="'
    )
    line = render.zone_file("sel._domainkey.example.com.", 3600, "x" * 300)
    assert line == 'sel._domainkey.example.com. 3600 IN TXT ( "' + "x" * 255 + '"\n\t"' + "x" * 45 + '" )'


@pytest.mark.parametrize("ttl", [-1, 2**31, 1.5, True, "300"])
def test_zone_file_rejects_bad_ttl(ttl: object) -> None:
    with pytest.raises(errors.ConfigError):
        render.zone_file("a.example.com", ttl, "x")  # type: ignore[arg-type]


@pytest.mark.parametrize("owner", ["", ".", "a..example.com", "x" * 64 + ".example.com"])
def test_zone_file_rejects_bad_owner(owner: str) -> None:
    with pytest.raises(errors.ConfigError):
        render.zone_file(owner, 300, "x")


@settings(max_examples=200, deadline=None)
@given(VALUES)
def test_zone_file_round_trips_through_dnspython(value: str) -> None:
    text = ZONE_HEAD + render.zone_file("sel._domainkey.example.com", 300, value) + "\n"
    zone = dns.zone.from_text(text, origin="example.com.", relativize=False)
    rdataset = zone.find_rdataset("sel._domainkey.example.com.", dns.rdatatype.TXT)
    assert rdataset.ttl == 300
    assert len(rdataset) == 1  # one record, however many strings
    (rdata,) = rdataset
    assert chunking.join(rdata.strings) == value
