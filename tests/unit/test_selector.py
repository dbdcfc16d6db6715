"""Selector templates and selector validity."""

from __future__ import annotations

import datetime

import pytest

from keys import selector
from providers import errors

WHEN = datetime.datetime(2024, 3, 7, 12, 0)


@pytest.mark.parametrize(
    ("template", "kwargs", "expected"),
    [
        ("{yyyy}{mm}", {}, "202403"),
        ("s{yyyy}{mm}{dd}", {}, "s20240307"),
        ("{signer}-{alg}-{yyyy}{mm}-{n}", {"signer": "MX1", "alg": "rsa", "n": 2}, "mx1-rsa-202403-2"),
        ("{alg}.{yyyy}", {"alg": "ed25519"}, "ed25519.2024"),
        ("Mail", {}, "mail"),
        ("{n}", {"n": 0}, "0"),
    ],
)
def test_render(template: str, kwargs: dict, expected: str) -> None:
    assert selector.render_selector(template, WHEN, **kwargs) == expected


def test_aware_datetime_uses_utc() -> None:
    tz = datetime.timezone(datetime.timedelta(hours=10))
    when = datetime.datetime(2024, 1, 1, 5, 0, tzinfo=tz)  # still 31 Dec 2023 in UTC
    assert selector.render_selector("{yyyy}{mm}{dd}", when) == "20231231"


@pytest.mark.parametrize(
    ("template", "kwargs", "why"),
    [
        ("{year}", {}, "unknown placeholder {year}"),
        ("{YYYY}", {}, "unknown placeholder"),
        ("{signer}-x", {}, "no signer was given"),
        ("{alg}", {}, "no alg was given"),
        ("{yyyy", {}, "unbalanced"),
        ("-{yyyy}", {}, "inner hyphens"),
        ("{yyyy}-", {}, "inner hyphens"),
        ("s_{yyyy}", {}, "inner hyphens"),
        ("a..{yyyy}", {}, "empty label"),
        (".{yyyy}", {}, "empty label"),
        ("", {}, "empty"),
        ("x" * 60 + "{yyyy}", {}, "longer than 63"),
        ("{signer}", {"signer": "mx 1"}, "inner hyphens"),
        ("{n}", {"n": -1}, "non-negative"),
    ],
)
def test_render_rejects(template: str, kwargs: dict, why: str) -> None:
    with pytest.raises(errors.ConfigError) as info:
        selector.render_selector(template, WHEN, **kwargs)
    assert why in str(info.value)
    assert repr(template) in str(info.value)  # names the template


def test_is_template() -> None:
    for rotating in ("{yyyy}{mm}", "k{n}", "{dd}", "{signer}-{mm}"):
        assert selector.is_template(rotating)
    for fixed in ("default", "{signer}", "{alg}-mail", "{signer}.{alg}"):
        assert not selector.is_template(fixed)


def test_validate_selector() -> None:
    assert selector.validate_selector("Default") == "default"
    assert selector.validate_selector("a.b-c.d9") == "a.b-c.d9"
    assert selector.validate_selector("x" * 63) == "x" * 63
    for bad in ("", "a.", ".a", "a..b", "-a", "a-", "a_b", "a b", "x" * 64, "é", "a.b" * 100):
        with pytest.raises(errors.ConfigError):
            selector.validate_selector(bad)
