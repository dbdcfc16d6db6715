"""DKIM key record building and parsing (RFC 6376 §3.6.1)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keys import record
from providers import errors

P = base64.b64encode(bytes(range(40))).decode()


def test_build_minimal() -> None:
    assert record.build(record.DkimRecord(p=P)) == f"v=DKIM1; k=rsa; p={P}"


def test_build_all_tags_in_order() -> None:
    rec = record.DkimRecord(k="ed25519", p=P, h=("sha256",), s=("email",), t=("y", "s"), n="rotated by dkimroll")
    assert record.build(rec) == f"v=DKIM1; k=ed25519; h=sha256; s=email; t=y:s; n=rotated by dkimroll; p={P}"


def test_build_revoked() -> None:
    rec = record.DkimRecord()
    assert rec.revoked
    assert record.build(rec) == "v=DKIM1; k=rsa; p="
    assert not record.DkimRecord(p=P).revoked


@pytest.mark.parametrize(
    "rec",
    [
        record.DkimRecord(p=P, n="a;b"),
        record.DkimRecord(p=P, n=" padded"),
        record.DkimRecord(p=P, n="caf\u00e9"),
        record.DkimRecord(p="not base64!"),
        record.DkimRecord(p="QUJD="),  # bad padding
        record.DkimRecord(k="r s a", p=P),
        record.DkimRecord(p=P, h=("sha256;x",)),
        record.DkimRecord(p=P, t=("",)),
        record.DkimRecord(p=P, v="DKIM2"),
    ],
)
def test_build_rejects_invalid(rec: record.DkimRecord) -> None:
    with pytest.raises(record.RecordBuildError):
        record.build(rec)


def test_errors_are_dkimroll_errors() -> None:
    assert issubclass(record.RecordParseError, errors.DkimrollError)
    assert issubclass(record.RecordBuildError, errors.DkimrollError)


def test_parse_tolerates_fws_everywhere() -> None:
    text = f" v = DKIM1 ;\tk=rsa ;\r\n h = sha1 : sha256 ; p = {P[:10]} \r\n\t{P[10:30]}  {P[30:]} ; "
    rec = record.parse(text)
    assert rec == record.DkimRecord(k="rsa", p=P, h=("sha1", "sha256"))


def test_parse_defaults_and_unknown_tags() -> None:
    rec = record.parse(f"p={P}; x-future=whatever; g=*")
    assert rec == record.DkimRecord(p=P)
    assert rec.k == "rsa" and rec.v == "DKIM1"


def test_parse_revoked() -> None:
    assert record.parse("v=DKIM1; p=").revoked
    assert record.parse("v=DKIM1; k=rsa; p= ;").revoked


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"k=rsa; v=DKIM1; p={P}", "first"),
        (f"v=DKIM2; p={P}", "DKIM1"),
        (f"v=DKIM1; p={P}; p={P}", "duplicate tag p="),
        (f"v=DKIM1; x=1; x=2; p={P}", "duplicate tag x="),
        ("v=DKIM1; k=rsa", "missing required tag p="),
        (f"v=DKIM1; k=rsa; junk; p={P}", "no '='"),
        (f"v=DKIM1;; p={P}", "no '='"),
        (f"v=DKIM1; 1x=2; p={P}", "invalid name"),
        (f"v=DKIM1; _x=2; p={P}", "invalid name"),
        ("v=DKIM1; p=abc$", "base64"),
        ("", "missing required tag p="),
        ("v=DKIM1; p=QUJD=", "base64"),
        ("V=DKIM1; k=rsa", "missing required tag p="),  # tag names are case-sensitive
    ],
)
def test_parse_rejects(text: str, message: str) -> None:
    with pytest.raises(record.RecordParseError, match=message):
        record.parse(text)


def test_parse_real_opendkim_record() -> None:
    # As opendkim-genkey writes it, after joining the TXT strings.
    text = 'v=DKIM1; h=sha256; k=rsa; s=email; p=' + P
    assert record.parse(text) == record.DkimRecord(p=P, h=("sha256",), s=("email",))


_words = st.from_regex(r"[A-Za-z](?:[A-Za-z0-9-]{0,8}[A-Za-z0-9])?", fullmatch=True)
_notes = st.from_regex(r"[!-:<-~](?:[ !-:<-~]{0,30}[!-:<-~])?", fullmatch=True)  # printable, no ';'
_records = st.builds(
    record.DkimRecord,
    k=st.sampled_from(["rsa", "ed25519"]) | _words,
    p=st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode()),
    h=st.lists(_words, max_size=3).map(tuple),
    s=st.lists(_words | st.just("*"), max_size=3).map(tuple),
    t=st.lists(st.sampled_from(["y", "s"]), max_size=2).map(tuple),
    n=st.none() | st.just("") | _notes,
)


@settings(max_examples=200, deadline=None)
@given(_records)
def test_parse_build_round_trip(rec: record.DkimRecord) -> None:
    assert record.parse(record.build(rec)) == rec


@settings(max_examples=200, deadline=None)
@given(_records, st.sampled_from([" ", "\t", "\r\n ", "  "]))
def test_parse_ignores_whitespace_inside_p(rec: record.DkimRecord, ws: str) -> None:
    text = record.build(rec)
    head, _, p = text.rpartition("p=")
    spaced = ws.join(p[i : i + 7] for i in range(0, len(p), 7))
    assert record.parse(f"{head}p={spaced}") == rec
