"""Build a DNS backend from a target's settings (plain dicts, as kept in state)."""

from __future__ import annotations

from typing import Any

from providers.dns.base import DnsBackend
from providers.errors import ConfigError


def make_dns_backend(target_name: str, settings: dict[str, Any]) -> DnsBackend:
    """One backend object per call; backends own their clients, so nothing is shared."""
    kind = settings.get("type")
    if kind == "bind-file":
        from providers.dns.bindfile import BindFileTarget

        return BindFileTarget(
            name=target_name,
            zone_dir=settings["zone_dir"],
            file_pattern=settings.get("file_pattern") or "{zone}.zone",
            create=bool(settings.get("create")),
            create_nameserver=settings.get("create_nameserver"),
            reload=settings.get("reload"),
            check_command=settings.get("check_command", "named-checkzone"),
        )
    if kind == "manual":
        from providers.dns.manual import ManualTarget

        return ManualTarget(name=target_name, export_dir=settings.get("export_dir"))
    raise ConfigError(f"dkimroll:dns.{target_name}.type", f"unknown DNS target type {kind!r}")
