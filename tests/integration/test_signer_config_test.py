"""A pushed configuration is tested on the host (where the tool exists) before any reload."""

from __future__ import annotations

import shutil

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from providers.errors import SignerError
from providers.signers.base import SigningKey
from providers.signers.local import LocalTransport
from providers.signers.opendkim import OpenDkimLayout
from providers.signers.sync import sync


def _key(domain: str) -> SigningKey:
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    return SigningKey(domain=domain, selector="s1", key_type="rsa", private_key_pem=pem)


class BrokenTest(OpenDkimLayout):
    def config_test(self) -> str:
        return "sh -c 'echo config is broken >&2; exit 1'"


def test_opendkim_checks_the_pushed_tables_then_reloads(tmp_path):
    assert shutil.which("opendkim"), "the real OpenDKIM must be installed for this test"
    layout = OpenDkimLayout(str(tmp_path / "keys"), str(tmp_path))
    marker = tmp_path / "reloaded"
    result = sync(LocalTransport("mta"), layout, [_key("a.test")], [], f"touch {marker}")
    assert result.reloaded and marker.exists()


def test_opendkim_refusing_the_tables_stops_the_reload(tmp_path):
    """A stray Ed25519 SigningTable whose KeyTable is missing: the real `opendkim -n` fails."""
    layout = OpenDkimLayout(str(tmp_path / "keys"), str(tmp_path))
    marker = tmp_path / "reloaded"
    sync(LocalTransport("mta"), layout, [_key("a.test")], [], None)
    (tmp_path / "SigningTable.ed25519").write_text("*@a.test s1._domainkey.a.test\n")
    rotated = _key("a.test")  # a new key: the sync writes, so it tests before reloading
    with pytest.raises(SignerError, match="configuration test failed"):
        sync(LocalTransport("mta"), layout, [rotated], [], f"touch {marker}")
    assert not marker.exists()


def test_a_failing_configuration_test_stops_the_reload(tmp_path):
    layout = BrokenTest(str(tmp_path / "keys"), str(tmp_path))
    marker = tmp_path / "reloaded"
    with pytest.raises(SignerError, match="configuration test failed, so it was not reloaded"):
        sync(LocalTransport("mta"), layout, [_key("a.test")], [], f"touch {marker}")
    assert not marker.exists()
