"""Rendering of the Exim layout: key files and the nwildlsearch sender table.

When Exim is installed, the last test runs the documented macros through the
real `exim -bem` expansion tester against a rendered table and a message.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from providers.errors import ConfigError
from tests.pem import fresh_pem
from providers.signers.base import SigningKey
from providers.signers.exim import EximLayout

PEM = fresh_pem()  # made at run time; only its bytes matter here


def key(domain: str, selector: str, key_type: str = "rsa", sign_for: tuple[str, ...] = ()) -> SigningKey:
    return SigningKey(domain, selector, key_type, PEM, sign_for)


@pytest.fixture
def layout() -> EximLayout:
    return EximLayout("/etc/exim4/dkim", "/etc/exim4")


def body(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("#")]


def test_key_files(layout):
    files = {f.path: f for f in layout.files([key("Example.com", "s1"), key("example.com", "e1", "ed25519")])}
    f = files["/etc/exim4/dkim/example.com.s1.key"]
    assert f.content == (PEM + "\n").encode()
    assert (f.mode, f.owner, f.group) == (0o640, None, "Debian-exim")
    assert f.secret and "PRIVATE" not in repr(f)
    assert "/etc/exim4/dkim/example.com.e1.key" in files  # Ed25519: PKCS#8 PEM as well
    table = files["/etc/exim4/dkim_domains"]
    assert not table.secret and table.mode == 0o644
    assert layout.key_dirs() == ["/etc/exim4/dkim"]


def test_table_one_line_per_rule_with_all_selectors(layout):
    text = layout.render_table([
        key("example.com", "s1"), key("example.com", "e1", "ed25519"), key("example.org", "s2"),
    ])
    assert body(text) == [
        "*@example.com: domain=example.com selectors=e1:s1",
        "*@example.org: domain=example.org selectors=s2",
    ]


def test_header_carries_the_macros(layout):
    text = layout.render_table([key("example.com", "s1")])
    assert text.startswith("# Managed by dkimroll")
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    for line in layout.macros().splitlines():
        assert f"#   {line}" in header
    assert "nwildlsearch{/etc/exim4/dkim_domains}" in layout.macros()
    assert "DKIM_PRIVATE_KEY = /etc/exim4/dkim/${dkim_domain}.${dkim_selector}.key" in layout.macros()


def test_sign_for_rules_order_and_selectors(layout):
    text = layout.render_table([
        key("example.com", "s1", sign_for=("*@example.com", "*@Customer.example", "CEO@other.example")),
        key("example.com", "e1", "ed25519", sign_for=("*@example.com",)),
    ])
    # exact addresses first (first match wins); a rule lists the keys that carry it
    assert body(text) == [
        "ceo@other.example: domain=example.com selectors=s1",
        "*@customer.example: domain=example.com selectors=s1",
        "*@example.com: domain=example.com selectors=e1:s1",
    ]


@pytest.mark.parametrize("pattern", ["*", "*@*.example.com", "a*@example.com", "user", "a:b@example.com",
                                     "^.*@example.com", "a b@example.com"])
def test_inexpressible_patterns_refused(layout, pattern):
    with pytest.raises(ConfigError) as err:
        layout.files([key("example.com", "s1", sign_for=(pattern,))])
    assert err.value.key == "s1._domainkey.example.com"


def test_pattern_claimed_by_two_domains_refused(layout):
    with pytest.raises(ConfigError, match="also claimed by example.com"):
        layout.files([
            key("example.com", "s1", sign_for=("*@shared.example",)),
            key("example.org", "s1", sign_for=("*@shared.example",)),
        ])


@pytest.mark.parametrize(
    "bad",
    [dict(key_dir="keys"), dict(table_dir="/etc/exim:4"), dict(key_dir="/etc/exim4/${x}"),
     dict(key_mode=0o644), dict(table_mode=0o664)],
)
def test_bad_settings_refused(bad):
    settings = dict(key_dir="/etc/exim4/dkim", table_dir="/etc/exim4")
    settings.update(bad)
    with pytest.raises(ConfigError):
        EximLayout(**settings)


def test_bad_keys_refused(layout):
    with pytest.raises(ConfigError, match="share"):
        layout.files([key("example.com", "s1"), key("example.com", "s1", "ed25519")])
    with pytest.raises(ConfigError, match="selector"):
        layout.files([key("example.com", "s:1")])
    secret = "definitely not pem"
    with pytest.raises(ConfigError) as err:
        layout.files([SigningKey("example.com", "s1", "rsa", secret)])
    assert secret not in str(err.value)


# --- the real Exim expands the macros against the table -----------------------------

EXIM = shutil.which("exim4") or shutil.which("exim")


@pytest.mark.skipif(EXIM is None, reason="Exim is not installed")
def test_exim_expands_the_documented_macros(tmp_path):
    work = tmp_path
    layout = EximLayout(str(work / "dkim"), str(work))
    table = next(f for f in layout.files([
        key("example.com", "s1", sign_for=("*@example.com", "ceo@customer.example")),
        key("example.com", "e1", "ed25519", sign_for=("*@example.com",)),
        key("example.org", "s2"),
    ]) if f.path == layout.table_path)
    Path(table.path).write_bytes(table.content)
    conf = work / "exim.conf"
    conf.write_text(layout.macros() + f"spool_directory = {work}/spool\nlog_file_path = {work}/%slog\n")

    def expand(from_header: str) -> str:
        message = work / "message"
        message.write_text(f"From: {from_header}\nTo: rcpt@example.net\nSubject: x\n\nbody\n")
        proc = subprocess.run([EXIM, "-C", str(conf), "-bem", str(message), "DKIM_DOMAIN|DKIM_SELECTOR"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout.strip()

    assert expand("Bob <bob@Example.COM>") == "example.com|e1:s1"
    assert expand("ceo@customer.example") == "example.com|s1"
    assert expand("intern@customer.example") == "|"  # no rule: Exim does not sign
    assert expand("Alice <alice@example.org>") == "example.org|s2"
