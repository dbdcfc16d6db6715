"""Domain names: IDNA 2008 A-labels and host-name validation."""

from __future__ import annotations

import pytest

from keys import names
from providers import errors


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("example.com", "example.com"),
        ("Example.COM.", "example.com"),
        (" example.com ", "example.com"),
        ("Bücher.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("straße.de", "xn--strae-oqa.de"),  # IDNA 2008: no transitional mapping to "strasse"
        ("sel._domainkey.example.com", "sel._domainkey.example.com"),
        ("localhost", "localhost"),
    ],
)
def test_to_a_label(domain: str, expected: str) -> None:
    assert names.to_a_label(domain) == expected


@pytest.mark.parametrize("domain", ["", ".", "a..b", "☃.example", "ex ample.com", "x" * 64 + ".com", "a\\200.com"])
def test_to_a_label_rejects(domain: str) -> None:
    with pytest.raises(errors.ConfigError) as info:
        names.to_a_label(domain)
    assert repr(domain) in str(info.value)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("example.com", "example.com"),
        ("Mail.Bücher.example", "mail.xn--bcher-kva.example"),
        ("a-b.c9.example.", "a-b.c9.example"),
        ("x" * 63 + ".com", "x" * 63 + ".com"),
    ],
)
def test_validate_domain(name: str, expected: str) -> None:
    assert names.validate_domain(name) == expected


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("localhost", "two labels"),
        ("-a.com", "inner hyphens"),
        ("a-.com", "inner hyphens"),
        ("_dmarc.example.com", "inner hyphens"),
        (".".join(["a" * 60] * 5), "255 octets"),
    ],
)
def test_validate_domain_rejects(name: str, why: str) -> None:
    with pytest.raises(errors.ConfigError) as info:
        names.validate_domain(name)
    assert why in str(info.value)


def test_total_length_limit() -> None:
    ok = ".".join(["a" * 63] * 3 + ["b" * 61])  # 253 characters
    assert len(ok) == 253
    assert names.validate_domain(ok) == ok
    with pytest.raises(errors.ConfigError):
        names.validate_domain(ok + "b")
