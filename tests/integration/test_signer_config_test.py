"""A pushed configuration is tested on the host (where the tool exists) before any reload."""

from __future__ import annotations

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
    layout = OpenDkimLayout(str(tmp_path / "keys"), str(tmp_path))
    marker = tmp_path / "reloaded"
    result = sync(LocalTransport("mta"), layout, [_key("a.test")], [], f"touch {marker}")
    assert result.reloaded and marker.exists()


def test_a_failing_configuration_test_stops_the_reload(tmp_path):
    layout = BrokenTest(str(tmp_path / "keys"), str(tmp_path))
    marker = tmp_path / "reloaded"
    with pytest.raises(SignerError, match="configuration test failed, so it was not reloaded"):
        sync(LocalTransport("mta"), layout, [_key("a.test")], [], f"touch {marker}")
    assert not marker.exists()
