"""Build a signer host's layout and transport from its settings (plain dicts, as kept in state)."""

from __future__ import annotations

from typing import Any

from providers.errors import ConfigError
from providers.signers.base import SignerLayout, Transport


def _mode(settings: dict[str, Any]) -> int:
    return int(settings.get("mode") or "0600", 8)


def make_layout(signer_name: str, settings: dict[str, Any]) -> SignerLayout:
    """The file layout of the host's signing software."""
    software = settings.get("software", "opendkim")
    common = {"key_dir": settings["key_dir"], "owner": settings.get("owner"),
              "group": settings.get("group"), "key_mode": _mode(settings)}
    if software == "opendkim":
        from providers.signers.opendkim import OpenDkimLayout

        return OpenDkimLayout(table_dir=settings["table_dir"], **common)
    if software == "rspamd":
        from providers.signers.rspamd import RspamdLayout

        common["owner"] = settings.get("owner") or "root"
        return RspamdLayout(config_dir=settings["table_dir"], **common)
    if software == "exim":
        from providers.signers.exim import EximLayout

        return EximLayout(table_dir=settings["table_dir"], **common)
    raise ConfigError(f"dkimroll:signers.{signer_name}.software", f"unknown signer software {software!r}")


def make_transport(signer_name: str, settings: dict[str, Any]) -> Transport:
    """A new connection to the host; the caller closes it."""
    transport = settings.get("transport")
    if transport == "local":
        from providers.signers.local import LocalTransport

        return LocalTransport(name=signer_name, reload=settings.get("reload"))
    if transport == "ssh":
        from providers.signers.ssh import SshTransport

        return SshTransport(
            name=signer_name,
            host=settings["host"],
            port=int(settings.get("port") or 22),
            user=settings.get("user") or "root",
            known_hosts=settings.get("known_hosts"),
            host_key_fingerprint=settings.get("host_key_fingerprint"),
            identity_file=settings.get("identity_file"),
            passphrase=settings.get("passphrase"),
            use_agent=bool(settings.get("use_agent", True)),
            sudo=bool(settings.get("sudo")),
            reload=settings.get("reload"),
            timeout=float(settings.get("timeout") or 30.0),
        )
    raise ConfigError(f"dkimroll:signers.{signer_name}.transport", f"unknown transport {transport!r}")
