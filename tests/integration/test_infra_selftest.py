"""Self-test of the integration harness: real named + real OpenDKIM + dkimpy.

If these fail, no integration test built on ``tests.infra`` can be trusted.
"""

from __future__ import annotations

import base64
import os
import shutil
import textwrap
from pathlib import Path


import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from tests.infra.dkimverify import verify
from tests.infra.named import NamedServer, TsigKey
from tests.infra.opendkim import OpenDkimError, OpenDkimSigner
from tests.infra.ports import free_port
from tests.infra.wait import wait_until

_TOOLS = ("named", "rndc", "named-checkzone", "opendkim", "miltertest")
_missing = [t for t in _TOOLS
            if not (shutil.which(t) or any(os.path.exists(f"{d}/{t}") for d in ("/usr/sbin", "/usr/bin")))]
pytestmark = pytest.mark.skipif(bool(_missing), reason=f"missing tools: {_missing}")

DOMAIN = "example.test"
RSA_SELECTOR = "sel"
ED_SELECTOR = "ed"


# ----------------------------------------------------------------- helpers
def _pkcs8(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write_private(path: Path, data: "bytes | str") -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    os.chmod(path, 0o600)
    return path


def _txt_strings(value: str, size: int = 255) -> list[str]:
    return [value[i:i + size] for i in range(0, len(value), size)]


def _zone_text(serial: int, records: dict[str, str]) -> str:
    lines = [
        "$TTL 300",
        f"$ORIGIN {DOMAIN}.",
        f"@ IN SOA ns.{DOMAIN}. hostmaster.{DOMAIN}. ( {serial} 3600 600 86400 300 )",
        f"@ IN NS ns.{DOMAIN}.",
        "ns IN A 127.0.0.1",
    ]
    for owner, value in records.items():
        chunks = " ".join(f'"{c}"' for c in _txt_strings(value))
        lines.append(f"{owner} IN TXT ( {chunks} )")
    return "\n".join(lines) + "\n"


class Keys:
    def __init__(self, root: Path) -> None:
        self.dir = root / "keys"
        self.dir.mkdir(mode=0o700)
        os.chmod(self.dir, 0o700)
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ed = ed25519.Ed25519PrivateKey.generate()
        self.rsa_pem = _write_private(self.dir / "rsa.pem", _pkcs8(self.rsa))
        self.ed_pem = _write_private(self.dir / "ed.pem", _pkcs8(self.ed))
        spki = self.rsa.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        raw = self.ed.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        assert len(raw) == 32
        self.rsa_txt = f"v=DKIM1; k=rsa; p={base64.b64encode(spki).decode()}"
        self.ed_txt = f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"

        self.rsa_keytable = _write_private(
            self.dir / "KeyTable.rsa", f"rsakey {DOMAIN}:{RSA_SELECTOR}:{self.rsa_pem}\n")
        self.rsa_signingtable = _write_private(
            self.dir / "SigningTable.rsa", f"*@{DOMAIN} rsakey\n")
        self.ed_keytable = _write_private(
            self.dir / "KeyTable.ed", f"edkey {DOMAIN}:{ED_SELECTOR}:{self.ed_pem}\n")
        self.ed_signingtable = _write_private(
            self.dir / "SigningTable.ed", f"*@{DOMAIN} edkey\n")

    def records(self) -> dict[str, str]:
        return {f"{RSA_SELECTOR}._domainkey": self.rsa_txt,
                f"{ED_SELECTOR}._domainkey": self.ed_txt}


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("infra-selftest")
    os.chmod(root, 0o700)
    keys = Keys(root)
    zone_file = root / f"{DOMAIN}.zone"
    zone_file.write_text(_zone_text(1, keys.records()))
    return root, keys, zone_file


@pytest.fixture(scope="module")
def named(world):
    root, _keys, zone_file = world
    with NamedServer(root, {DOMAIN: zone_file}) as ns:
        yield ns


@pytest.fixture(scope="module")
def rsa_signer(world):
    root, keys, _ = world
    with OpenDkimSigner(root, keys.rsa_keytable, keys.rsa_signingtable) as signer:
        yield signer


@pytest.fixture(scope="module")
def ed_signer(world):
    root, keys, _ = world
    with OpenDkimSigner(root, keys.ed_keytable, keys.ed_signingtable,
                        signature_algorithm="ed25519-sha256") as signer:
        yield signer


def _tamper_body(message: bytes) -> bytes:
    head, sep, body = message.partition(b"\r\n\r\n")
    assert sep and body
    return head + sep + body.replace(b"Hello", b"Hellx", 1)


# ------------------------------------------------------------------- tests
def test_named_serves_multistring_txt(named, world):
    _, keys, _ = world
    rdatas = named.query_txt(f"{RSA_SELECTOR}._domainkey.{DOMAIN}")
    assert len(rdatas) == 1
    strings = rdatas[0]
    assert len(strings) > 1, "RSA-2048 key must be split into several <=255 strings"
    assert all(len(s) <= 255 for s in strings)
    assert b"".join(strings).decode() == keys.rsa_txt

    ed = named.query_txt(f"{ED_SELECTOR}._domainkey.{DOMAIN}")
    assert [b"".join(r).decode() for r in ed] == [keys.ed_txt]
    assert named.query_txt(f"missing._domainkey.{DOMAIN}") == []
    assert named.soa_serial(DOMAIN) == 1


def test_opendkim_rsa_signature_verifies_against_named(named, rsa_signer):
    msg = rsa_signer.sign(f"User <user@{DOMAIN}>", "rcpt@example.net", "rsa test",
                          "Hello from the RSA signer.\nSecond line.\n")
    assert msg.startswith(b"DKIM-Signature: ")
    assert b"\r\n" in msg and b"\n" not in msg.replace(b"\r\n", b"")
    assert b"a=rsa-sha256" in msg and b"c=relaxed/relaxed" in msg
    assert verify(msg, named) == [(True, RSA_SELECTOR, DOMAIN)]


def test_opendkim_ed25519_signature_verifies_against_named(named, ed_signer):
    msg = ed_signer.sign(f"user@{DOMAIN}", "rcpt@example.net", "ed25519 test",
                         "Hello from the Ed25519 signer.\n")
    assert b"a=ed25519-sha256" in msg
    results = verify(msg, named)
    assert results == [(True, ED_SELECTOR, DOMAIN)], results[0].reason


def test_tampered_body_fails(named, rsa_signer, ed_signer):
    for signer, selector in ((rsa_signer, RSA_SELECTOR), (ed_signer, ED_SELECTOR)):
        msg = signer.sign(f"user@{DOMAIN}", "rcpt@example.net", "tamper",
                          "Hello, this body will be modified.\n")
        assert verify(msg, named) == [(True, selector, DOMAIN)]
        [bad] = verify(_tamper_body(msg), named)
        assert bad == (False, selector, DOMAIN)
        assert "body hash" in bad.reason


def test_unknown_selector_fails(named, world, tmp_path):
    """A signature whose selector is not published must not verify."""
    _, keys, _ = world
    kt = _write_private(tmp_path / "KeyTable", f"k {DOMAIN}:nosuch:{keys.rsa_pem}\n")
    st = _write_private(tmp_path / "SigningTable", f"*@{DOMAIN} k\n")
    os.chmod(tmp_path, 0o700)
    with OpenDkimSigner(tmp_path, kt, st) as signer:
        msg = signer.sign(f"user@{DOMAIN}", "rcpt@example.net", "s", "Hello\n")
    [res] = verify(msg, named)
    assert res == (False, "nosuch", DOMAIN)


def test_unsigned_domain_raises_clear_error(rsa_signer):
    with pytest.raises(OpenDkimError, match="did not sign"):
        rsa_signer.sign("user@other.test", "rcpt@example.net", "no key", "Hello\n")


def test_reload_waits_for_new_serial(tmp_path, world):
    _, keys, _ = world
    zone_file = tmp_path / "reload.zone"
    zone_file.write_text(_zone_text(10, {f"{RSA_SELECTOR}._domainkey": keys.rsa_txt}))
    with NamedServer(tmp_path, {DOMAIN: zone_file}) as ns:
        assert ns.query_txt(f"new._domainkey.{DOMAIN}") == []
        zone_file.write_text(_zone_text(11, {f"{RSA_SELECTOR}._domainkey": keys.rsa_txt,
                                             "new._domainkey": keys.ed_txt}))
        assert ns.reload() == {DOMAIN: 11}
        assert ns.soa_serial(DOMAIN) == 11
        assert [b"".join(r).decode() for r in ns.query_txt(f"new._domainkey.{DOMAIN}")] \
            == [keys.ed_txt]
        # same serial, different content: reload() still waits for the load
        zone_file.write_text(_zone_text(11, {"only._domainkey": "v=DKIM1; p="}))
        ns.reload(DOMAIN)
        assert ns.query_txt(f"new._domainkey.{DOMAIN}") == []
        pid = ns._proc.pid
    assert not ns.is_running()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_rfc2136_update_with_tsig(tmp_path, world):
    _, keys, _ = world
    src = tmp_path / "dyn.zone"
    src.write_text(_zone_text(1, {}))
    key = TsigKey.generate("dkimroll-test-key")
    with NamedServer(tmp_path, {DOMAIN: src}, allow_update_key=key) as ns:
        assert ns.zone_files[DOMAIN] != src.resolve()  # served from a private copy
        upd = ns.make_update(DOMAIN)
        upd.replace("rot._domainkey", 300, "TXT",
                    " ".join(f'"{c}"' for c in _txt_strings(keys.rsa_txt)))
        ns.send_update(upd)
        got = wait_until(lambda: ns.query_txt(f"rot._domainkey.{DOMAIN}"), timeout=10,
                         what="updated TXT to be served")
        assert b"".join(got[0]).decode() == keys.rsa_txt
        assert ns.soa_serial(DOMAIN) == 2
        assert ns.journal_path(DOMAIN).exists()

        # an unsigned update is refused
        import dns.update
        unsigned = dns.update.UpdateMessage(DOMAIN)
        unsigned.delete("rot._domainkey")
        resp = ns.send_update(unsigned, check=False)
        assert resp.rcode() == dns.rcode.REFUSED


def test_free_port_is_bindable_for_tcp_and_udp():
    import socket
    port = free_port()
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", port))


def test_named_fails_fast_on_broken_zone(tmp_path):
    bad = tmp_path / "bad.zone"
    bad.write_text(textwrap.dedent("""\
        $TTL 300
        @ IN SOA ns.example.test. hostmaster.example.test. ( 1 3600 600 86400 300 )
        @ IN NS ns.example.test.
        this is not a record
        """))
    server = NamedServer(tmp_path, {DOMAIN: bad}, start_timeout=20)
    with pytest.raises(RuntimeError, match="zone failed to load"):
        server.start()
    assert not server.is_running()


def test_require_safe_keys_only_relaxed_for_sticky_ancestors(world, tmp_path, rsa_signer):
    # the shared signer either kept OpenDKIM's check, or relaxed it solely
    # because an ancestor such as /tmp is world-writable+sticky
    assert rsa_signer.require_safe_keys or "sticky" in rsa_signer.safe_keys_note, \
        rsa_signer.safe_keys_note

    # a group/world-readable key keeps the check on and OpenDKIM refuses it
    _, keys, _ = world
    os.chmod(tmp_path, 0o700)
    loose = tmp_path / "loose.pem"
    loose.write_bytes(keys.rsa_pem.read_bytes())
    os.chmod(loose, 0o644)
    kt = _write_private(tmp_path / "KeyTable", f"k {DOMAIN}:{RSA_SELECTOR}:{loose}\n")
    st = _write_private(tmp_path / "SigningTable", f"*@{DOMAIN} k\n")
    with OpenDkimSigner(tmp_path, kt, st) as signer:
        assert signer.require_safe_keys is True
        assert "not owner-only" in signer.safe_keys_note
        with pytest.raises(OpenDkimError, match="did not sign"):
            signer.sign(f"user@{DOMAIN}", "rcpt@example.net", "s", "Hello\n")
