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
    if kind == "rfc2136":
        from providers.dns.rfc2136 import Rfc2136Target

        return Rfc2136Target(
            name=target_name,
            server=settings["server"],
            port=int(settings.get("port") or 53),
            tsig_name=settings.get("tsig_name"),
            tsig_secret=settings.get("tsig_secret"),
            tsig_algorithm=settings.get("tsig_algorithm") or "hmac-sha256",
            timeout=float(settings.get("timeout") or 10.0),
        )
    if kind == "route53":
        from providers.dns.route53 import Route53Target

        return Route53Target(
            name=target_name,
            profile=settings.get("profile"),
            region=settings.get("region"),
            hosted_zone_id=settings.get("hosted_zone_id"),
            private_zone=bool(settings.get("private_zone")),
            endpoint_url=settings.get("endpoint_url"),
            wait_timeout=float(settings.get("wait_timeout") or 300.0),
        )
    if kind == "godaddy":
        from providers.dns.godaddy import GoDaddyTarget

        return GoDaddyTarget(
            name=target_name,
            api_key=settings.get("api_key"),
            api_secret=settings.get("api_secret"),
            environment=settings.get("environment") or "production",
            base_url=settings.get("base_url"),
            pace_seconds=float(settings.get("pace_seconds", 1.0)),
        )
    raise ConfigError(f"dkimroll:dns.{target_name}.type", f"unknown DNS target type {kind!r}")
