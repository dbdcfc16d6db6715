"""Rendering of the OpenDKIM layout: key files, KeyTable/SigningTable, the Ed25519 set."""

from __future__ import annotations

import random

import pytest

from providers.errors import ConfigError
from tests.pem import fresh_pem
from providers.signers.opendkim import OpenDkimLayout, signing_table_order
from providers.signers.base import SigningKey

PEM = fresh_pem()  # made at run time; only its bytes matter here


def key(domain: str, selector: str, key_type: str = "rsa", sign_for: tuple[str, ...] = ()) -> SigningKey:
    return SigningKey(domain, selector, key_type, PEM, sign_for)


@pytest.fixture
def layout() -> OpenDkimLayout:
    return OpenDkimLayout("/etc/opendkim/keys", "/etc/opendkim", owner="opendkim", group="opendkim")


def by_path(files):
    return {f.path: f for f in files}


def body(text: bytes) -> list[str]:
    """Table lines without the header comments."""
    return [line for line in text.decode().splitlines() if not line.startswith("#")]


def test_key_file(layout):
    files = by_path(layout.files([key("example.com", "s2024")]))
    f = files["/etc/opendkim/keys/s2024._domainkey.example.com.private"]
    assert f.content == (PEM + "\n").encode()
    assert f.mode == 0o600
    assert (f.owner, f.group) == ("opendkim", "opendkim")
    assert f.secret
    assert "PRIVATE" not in repr(f)
    assert layout.key_dirs() == ["/etc/opendkim/keys"]


def test_rsa_tables(layout):
    files = by_path(layout.files([key("example.com", "s1"), key("example.org", "a")]))
    kt = files["/etc/opendkim/KeyTable"]
    st = files["/etc/opendkim/SigningTable"]
    assert not kt.secret and not st.secret
    assert kt.mode == st.mode == 0o644
    assert (kt.owner, kt.group) == (None, None)
    assert body(kt.content) == [
        "s1._domainkey.example.com example.com:s1:/etc/opendkim/keys/s1._domainkey.example.com.private",
        "a._domainkey.example.org example.org:a:/etc/opendkim/keys/a._domainkey.example.org.private",
    ]
    assert body(st.content) == [
        "*@example.com s1._domainkey.example.com",
        "*@example.org a._domainkey.example.org",
    ]
    # no Ed25519 key: no second table set
    assert set(files) == {
        "/etc/opendkim/keys/s1._domainkey.example.com.private",
        "/etc/opendkim/keys/a._domainkey.example.org.private",
        "/etc/opendkim/KeyTable",
        "/etc/opendkim/SigningTable",
    }


def test_header_names_settings(layout):
    files = by_path(layout.files([key("example.com", "s1")]))
    for path in ("/etc/opendkim/KeyTable", "/etc/opendkim/SigningTable"):
        header = [l for l in files[path].content.decode().splitlines() if l.startswith("#")]
        text = " ".join(header)
        assert header and "dkimroll" in header[0]
        assert "KeyTable file:/etc/opendkim/KeyTable" in text
        assert "SigningTable refile:/etc/opendkim/SigningTable" in text


def test_sign_for_patterns_order(layout):
    keys = [
        key("example.com", "s1", sign_for=("*@example.com", "ceo@example.com", "*")),
        key("example.org", "s1", sign_for=("*@*.example.org", "bob@example.org", "alice@example.org")),
    ]
    st = by_path(layout.files(keys))["/etc/opendkim/SigningTable"]
    assert body(st.content) == [
        # exact addresses first, alphabetically
        "alice@example.org s1._domainkey.example.org",
        "bob@example.org s1._domainkey.example.org",
        "ceo@example.com s1._domainkey.example.com",
        # then wildcards, most specific first: the catch-all comes last
        "*@*.example.org s1._domainkey.example.org",
        "*@example.com s1._domainkey.example.com",
        "* s1._domainkey.example.com",
    ]


def test_signing_table_order_key():
    patterns = ["*", "*@example.com", "a@example.com", "*@x.example.com"]
    assert sorted(patterns, key=signing_table_order) == [
        "a@example.com",
        "*@x.example.com",
        "*@example.com",
        "*",
    ]


def test_ed25519_second_set(layout):
    keys = [key("example.com", "r1"), key("example.com", "e1", "ed25519", ("*@example.com",))]
    files = by_path(layout.files(keys))
    assert body(files["/etc/opendkim/KeyTable"].content) == [
        "r1._domainkey.example.com example.com:r1:/etc/opendkim/keys/r1._domainkey.example.com.private"
    ]
    assert body(files["/etc/opendkim/SigningTable"].content) == [
        "*@example.com r1._domainkey.example.com"
    ]
    kt = files["/etc/opendkim/KeyTable.ed25519"]
    st = files["/etc/opendkim/SigningTable.ed25519"]
    assert body(kt.content) == [
        "e1._domainkey.example.com example.com:e1:/etc/opendkim/keys/e1._domainkey.example.com.private"
    ]
    assert body(st.content) == ["*@example.com e1._domainkey.example.com"]
    header = kt.content.decode()
    assert "KeyTable file:/etc/opendkim/KeyTable.ed25519" in header
    assert "SigningTable refile:/etc/opendkim/SigningTable.ed25519" in header
    assert "SignatureAlgorithm ed25519-sha256" in header
    assert files["/etc/opendkim/keys/e1._domainkey.example.com.private"].secret


def test_only_ed25519_keys_still_writes_empty_rsa_set(layout):
    files = by_path(layout.files([key("example.com", "e1", "ed25519")]))
    assert body(files["/etc/opendkim/KeyTable"].content) == []
    assert body(files["/etc/opendkim/SigningTable"].content) == []
    assert files["/etc/opendkim/KeyTable"].content.startswith(b"# Managed by dkimroll")
    assert "/etc/opendkim/KeyTable.ed25519" in files


def test_no_keys(layout):
    files = layout.files([])
    assert [f.path for f in files] == ["/etc/opendkim/KeyTable", "/etc/opendkim/SigningTable"]
    assert all(body(f.content) == [] for f in files)


def test_deterministic(layout):
    keys = [
        key("b.example", "s1"),
        key("a.example", "s2", sign_for=("x@a.example", "*@a.example")),
        key("a.example", "s1", "ed25519"),
        key("c.example", "z"),
    ]
    first = [(f.path, f.content) for f in layout.files(keys)]
    for seed in range(5):
        shuffled = list(keys)
        random.Random(seed).shuffle(shuffled)
        assert [(f.path, f.content) for f in layout.files(shuffled)] == first
    # keys come before the tables that name them
    paths = [p for p, _ in first]
    assert all(p.endswith(".private") for p in paths[:4])


def test_modes_and_owner_defaults():
    lay = OpenDkimLayout("/srv/dkim/keys/", "/srv/dkim", key_mode=0o640, table_mode=0o600)
    files = by_path(lay.files([key("example.com", "s1")]))
    f = files["/srv/dkim/keys/s1._domainkey.example.com.private"]  # trailing slash normalized
    assert f.mode == 0o640 and f.owner is None and f.group is None
    assert files["/srv/dkim/KeyTable"].mode == 0o600


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o660, 0o602])
def test_unsafe_key_mode_rejected(mode):
    with pytest.raises(ConfigError) as err:
        OpenDkimLayout("/k", "/t", key_mode=mode)
    assert err.value.key == "key_mode"


@pytest.mark.parametrize("bad", ["relative/keys", "", "/with space", "/with:colon", "/with#hash"])
def test_bad_dirs_rejected(bad):
    with pytest.raises(ConfigError):
        OpenDkimLayout(bad, "/etc/opendkim")
    with pytest.raises(ConfigError):
        OpenDkimLayout("/etc/opendkim/keys", bad)


@pytest.mark.parametrize(
    "k",
    [
        key("example.com", "../../etc"),
        key("example.com", "a/b"),
        key("example.com", "a b"),
        key("exa mple.com", "s1"),
        key("example.com", "s1:x"),
        key("example.com", "s1", "dsa"),
        key("example.com", "s1", sign_for=("a b@example.com",)),
        key("example.com", "s1", sign_for=("#@example.com",)),
        key("example.com", "s1", sign_for=("",)),
        SigningKey("example.com", "s1", "rsa", "not a pem"),
    ],
)
def test_bad_keys_rejected(layout, k):
    with pytest.raises(ConfigError) as err:
        layout.files([k])
    assert "not a pem" not in str(err.value)


def test_duplicate_selector_rejected(layout):
    with pytest.raises(ConfigError, match="share"):
        layout.files([key("example.com", "s1"), key("example.com", "s1", "ed25519")])


def test_dotted_selector_and_underscore_allowed(layout):
    files = by_path(layout.files([key("mail.example.com", "s1.2024_a")]))
    assert "/etc/opendkim/keys/s1.2024_a._domainkey.mail.example.com.private" in files
