"""Build a signer host's layout and transport from its settings (plain dicts, as kept in state)."""

from __future__ import annotations

from typing import Any

from providers.errors import ConfigError
from providers.signers.base import SignerLayout, Transport


def make_layout(signer_name: str, settings: dict[str, Any]) -> SignerLayout:
    software = settings.get("software", "opendkim")
    if software == "opendkim":
        from providers.signers.opendkim import OpenDkimLayout

        return OpenDkimLayout(
            key_dir=settings["key_dir"],
            table_dir=settings["table_dir"],
            owner=settings.get("owner"),
            group=settings.get("group"),
            key_mode=int(settings.get("mode") or "0600", 8),
        )
    raise ConfigError(f"dkimroll:signers.{signer_name}.software", f"unknown signer software {software!r}")


def make_transport(signer_name: str, settings: dict[str, Any]) -> Transport:
    transport = settings.get("transport")
    if transport == "local":
        from providers.signers.local import LocalTransport

        return LocalTransport(name=signer_name, reload=settings.get("reload"))
    raise ConfigError(f"dkimroll:signers.{signer_name}.transport", f"unknown transport {transport!r}")
