"""The Pulumi program: stack config in, resources and outputs out. Kept thin.

Validation, planning, record building and all backend work live elsewhere;
this module only wires them into resources:

    KeyRing (per slot, inside a DkimDomain component)
      → DnsZone (per target × zone)  → SignerHost (per host, after DNS)
"""

from __future__ import annotations

import os
from typing import Any

import pulumi

from dkimroll import plan
from dkimroll.config import NAMESPACE, SECRET_SETTINGS, StackConfig, parse_stack_config
from keys import record as dkim_record
from providers.errors import DkimrollError
from keys import render
from providers.resources.keyring import KeyRing
from providers.resources.signer_host import SignerHost
from providers.resources.zone import DnsZone

CONFIG_KEYS = ("dns", "signers", "domains", "defaults")


def read_stack_config() -> StackConfig:
    """Parse `dkimroll:*` once; a ConfigError here stops the run before any resource exists."""
    cfg = pulumi.Config(NAMESPACE)
    raw: dict[str, Any] = {}
    for key in CONFIG_KEYS:
        value = cfg.get_object(key)
        if value is not None:
            raw[key] = value
    return parse_stack_config(raw)


class DkimDomain(pulumi.ComponentResource):
    """One domain's key slots; groups its resources in `pulumi stack` views."""

    def __init__(self, domain: str, slots: list[plan.Slot], imported_key: str | None) -> None:
        super().__init__("dkimroll:index:Domain", domain)
        self.rings: dict[plan.Slot, KeyRing] = {}
        for slot in slots:
            self.rings[slot] = KeyRing(
                slot.resource_name,
                domain=slot.domain,
                slot=slot.name,
                algorithm=slot.algorithm,
                selector_template=slot.selector_template,
                signer=None if slot.name == plan.SHARED else slot.name,
                imported_key=imported_key,
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs({})


def _record(slot: plan.Slot, key: dict[str, Any]) -> dict[str, Any]:
    value = dkim_record.build(
        dkim_record.DkimRecord(k=key["key_type"], p=key["p"], t=("y",) if slot.testing else ())
    )
    name = f"{key['selector']}._domainkey.{slot.domain}"
    return {"name": name, "value": value, "ttl": slot.ttl, "retain": slot.retain_seconds}


def _zone_records(slots: list[plan.Slot], rings: dict[plan.Slot, KeyRing]) -> pulumi.Output[list]:
    def build(per_slot: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
        records = [_record(slot, key) for slot, keys in zip(slots, per_slot) for key in keys]
        return sorted(records, key=lambda r: (r["name"], r["value"]))

    return pulumi.Output.all(*[rings[slot].keys for slot in slots]).apply(build)


def _host_keys(slots: list[plan.Slot], rings: dict[plan.Slot, KeyRing]) -> pulumi.Output[list]:
    def build(args: list[Any]) -> list[dict[str, Any]]:
        half = len(slots)
        entries = []
        for slot, keys, pems in zip(slots, args[:half], args[half:]):
            for key in keys:
                entries.append({
                    "domain": slot.domain,
                    "selector": key["selector"],
                    "key_type": key["key_type"],
                    "private_key": pems[key["selector"]],
                    "sign_for": list(slot.sign_for),
                })
        return sorted(entries, key=lambda e: (e["domain"], e["selector"]))

    outputs = [rings[slot].keys for slot in slots] + [rings[slot].private_keys for slot in slots]
    return pulumi.Output.all(*outputs).apply(build)


def project_dir() -> str:
    """Base of relative paths in the stack file: the project directory."""
    return os.environ.get("DKIMROLL_PROJECT_DIR") or os.getcwd()


_LAYOUT_KEYS = {"root", "software", "key_dir", "table_dir", "owner", "group", "mode", "reload"}


def _as_input(settings: dict[str, Any]) -> pulumi.Input[dict]:
    """Settings carrying credentials travel as Pulumi secrets (encrypted in state, masked in output)."""
    if any(settings.get(key) for key in SECRET_SETTINGS):
        return pulumi.Output.secret(settings)
    return settings


def _signer_settings(config: StackConfig, name: str) -> pulumi.Input[dict]:
    signer = config.signers[name]
    key_dir, table_dir = signer.resolved_dirs(project_dir())
    settings = signer.model_dump(mode="json", exclude=_LAYOUT_KEYS)
    settings.update(signer.layout_settings(key_dir, table_dir))
    return _as_input(settings)


def _target_settings(config: StackConfig, name: str) -> pulumi.Input[dict]:
    settings = config.dns[name].model_dump(mode="json")
    for key in ("zone_dir", "export_dir"):
        if settings.get(key):
            settings[key] = os.path.normpath(os.path.join(project_dir(), settings[key]))
    return _as_input(settings)


def _exported_record(target: str, zone: str, item: dict[str, Any]) -> dict[str, Any]:
    return {
        "target": target,
        "zone": zone,
        "name": item["name"],
        "ttl": item["ttl"],
        "value": item["value"],
        "presentation": render.presentation(item["value"]),
        "zone_file": render.zone_file(item["name"], item["ttl"], item["value"]),
    }


def run() -> None:
    """Declare the whole stack. Called by `__main__.py` and by the Automation API."""
    try:
        config = read_stack_config()
    except DkimrollError as exc:
        # RunError reports the message alone: no traceback, nothing declared, nothing changed.
        raise pulumi.RunError(str(exc)) from None
    for warning in plan.weak_algorithms(config):
        pulumi.log.warn(warning)

    slots = plan.slots(config)
    rings: dict[plan.Slot, KeyRing] = {}
    for domain in sorted(config.domains):
        imported = config.domains[domain].private_key
        domain_slots = [slot for slot in slots if slot.domain == domain]
        rings.update(DkimDomain(domain, domain_slots, imported).rings)

    zone_resources: list[DnsZone] = []
    exported_records = []
    for (target, zone), zone_slots in plan.zones(slots).items():
        records = _zone_records(zone_slots, rings)
        zone_resources.append(DnsZone(
            f"{target}/{zone}",
            target_name=target,
            target=_target_settings(config, target),
            zone=zone,
            records=records,
        ))
        exported_records.append(records.apply(
            lambda items, t=target, z=zone: [_exported_record(t, z, item) for item in items]))

    for signer, host_slots in plan.hosts(slots).items():
        SignerHost(
            signer,
            signer_name=signer,
            settings=_signer_settings(config, signer),
            keys=_host_keys(host_slots, rings),
            opts=pulumi.ResourceOptions(depends_on=zone_resources),
        )

    pulumi.export("records", pulumi.Output.all(*exported_records).apply(
        lambda groups: [item for group in groups for item in group]))
    pulumi.export("keys", pulumi.Output.all(*[rings[s].keys for s in slots]).apply(
        lambda per_slot: [
            {"domain": s.domain, "slot": s.name, "signers": list(s.signers), **{
                k: key[k] for k in ("selector", "algorithm", "bits", "created")}}
            for s, keys in zip(slots, per_slot) for key in keys
        ]))
