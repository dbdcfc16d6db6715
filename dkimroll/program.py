"""The Pulumi program: stack config in, resources and outputs out. Kept thin.

Validation, planning, rotation and all backend work live elsewhere; this
module only wires them into resources, in the order that keeps signatures
verifiable:

    rotation.advance (pure: which keys exist, what DNS shows)
      → KeyRing per slot (makes missing keys)
      → DnsZone per target × zone (writes records, then verifies they are served)
      → rotation.activate per slot (switches to a new key only if it is served)
      → SignerHost per host (pushes active keys and tables)
"""

from __future__ import annotations

import json
import os
from typing import Any

import pulumi

from dkimroll import plan
from dkimroll.config import NAMESPACE, SECRET_SETTINGS, StackConfig, parse_stack_config
from keys import clock, render, rotation
from providers.errors import DkimrollError
from providers.resources.keyring import KeyRing
from providers.resources.signer_host import SignerHost
from providers.resources.zone import DnsZone

CONFIG_KEYS = ("dns", "signers", "domains", "defaults")
ROTATE_ENV = "DKIMROLL_ROTATE"  # set by `dkimroll rotate`: {"domain": …, "compromised": bool}


def read_stack_config() -> StackConfig:
    """Parse `dkimroll:*` once; a ConfigError here stops the run before any resource exists."""
    cfg = pulumi.Config(NAMESPACE)
    raw: dict[str, Any] = {}
    for key in CONFIG_KEYS:
        value = cfg.get_object(key)
        if value is not None:
            raw[key] = value
    return parse_stack_config(raw)


def rotate_request(domain: str) -> rotation.Request | None:
    raw = os.environ.get(ROTATE_ENV)
    if not raw:
        return None
    wanted = json.loads(raw)
    if wanted.get("domain") != domain:
        return None
    return rotation.Request(compromised=bool(wanted.get("compromised")))


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
    return _as_input(config.dns[name].settings(project_dir()))


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


class DkimDomain(pulumi.ComponentResource):
    """One domain's key rings; groups its resources in `pulumi stack` views."""

    def __init__(self, domain: str, rings: dict[plan.Slot, list[dict[str, Any]]], imported: str | None) -> None:
        super().__init__("dkimroll:index:Domain", domain)
        self.rings: dict[plan.Slot, KeyRing] = {
            slot: KeyRing(slot.resource_name, domain=slot.domain, slot=slot.name, key_type=slot.key_type,
                          wanted=wanted, imported_key=imported, opts=pulumi.ResourceOptions(parent=self))
            for slot, wanted in rings.items()
        }
        self.register_outputs({})


def run(ledger: dict[str, Any] | None = None) -> None:
    """Declare the whole stack. `ledger` is the previous run's `ledger` output (empty at first)."""
    try:
        config = read_stack_config()
    except DkimrollError as exc:
        # RunError reports the message alone: no traceback, nothing declared, nothing changed.
        raise pulumi.RunError(str(exc)) from None
    for warning in plan.weak_algorithms(config):
        pulumi.log.warn(warning)

    now = clock.now()
    ledger = ledger if ledger is not None else load_ledger_for_plain_pulumi()
    slots = plan.slots(config)

    # 1. Rotation before DNS: which keys exist and what DNS must show.
    entries: dict[plan.Slot, tuple[rotation.KeyEntry, ...]] = {}
    withdrawn: dict[str, set[str]] = {}  # zone → owner names rotation removes on purpose
    for slot in slots:
        advanced, events = rotation.advance(
            slot.policy, plan.ledger_entries(ledger, slot), now, plan.selector_factory(slot, now),
            rotate_request(slot.domain), algorithm=slot.algorithm)
        entries[slot] = advanced
        for event in events:
            pulumi.log.info(f"{slot.owner(event.selector)}: {event.phase}")
            if event.phase == rotation.GONE:
                withdrawn.setdefault(slot.zone, set()).add(slot.owner(event.selector))

    rings: dict[plan.Slot, KeyRing] = {}
    for domain in sorted(config.domains):
        imported = config.domains[domain].private_key
        wanted = {s: plan.ring_wanted(entries[s], s, imported is not None) for s in slots if s.domain == domain}
        rings.update(DkimDomain(domain, wanted, imported).rings)

    slot_records = {slot: rings[slot].keys.apply(lambda keys, s=slot: plan.slot_records(s, entries[s], keys))
                    for slot in slots}

    # 2. DNS: one resource per zone writes its records and verifies they are served.
    zone_of: dict[plan.Slot, DnsZone] = {}
    exported_records = []
    gone_slots = plan.departed(ledger, slots, config.dns, now)
    zone_groups = plan.zones(slots)
    for item in gone_slots.values():
        zone_groups.setdefault((item["target"], item["zone"]), [])  # keeps the records for retain
    for (target, zone), zone_slots in sorted(zone_groups.items()):
        records = pulumi.Output.all([], *[slot_records[s] for s in zone_slots]).apply(
            lambda groups: sorted((r for g in groups for r in g), key=lambda r: (r["name"], r["value"])))
        resource = DnsZone(f"{target}/{zone}", target_name=target, target=_target_settings(config, target),
                           zone=zone, records=records, withdraw=sorted(withdrawn.get(zone, ())))
        zone_of.update({s: resource for s in zone_slots})
        exported_records.append(records.apply(
            lambda items, t=target, z=zone: [_exported_record(t, z, item) for item in items]))

    # 3. Activation after DNS: a new key signs only once every nameserver serves it.
    activated: dict[plan.Slot, pulumi.Output] = {}
    for slot in slots:
        def step(args: list[Any], s: plan.Slot = slot) -> list[dict]:
            records, verified, unverified = args
            after, events = rotation.activate(s.policy, entries[s], now, plan.served_check(s, records, verified))
            for event in events:
                pulumi.log.info(f"{s.owner(event.selector)}: {event.phase}")
            waiting = rotation.activation_candidate(s.policy, after, now)
            if waiting is not None:
                reason = next((u["reason"] for u in unverified or [] if u["name"] == s.owner(waiting.selector)),
                              "not confirmed yet")
                pulumi.log.warn(f"{s.owner(waiting.selector)} stays published, not signing: {reason}; "
                                "a later run retries")
            return rotation.SlotLedger(after).to_list()

        activated[slot] = pulumi.Output.all(
            slot_records[slot], zone_of[slot].verified, zone_of[slot].unverified).apply(step)

    # 4. Signers: each host gets the active key of every slot it signs for.
    for signer, host_slots in plan.hosts(slots).items():
        SignerHost(signer, signer_name=signer, settings=_signer_settings(config, signer),
                   keys=_host_keys(host_slots, rings, activated),
                   opts=pulumi.ResourceOptions(depends_on=list({id(z): z for z in zone_of.values()}.values())))

    pulumi.export("records", pulumi.Output.all(*exported_records).apply(
        lambda groups: [item for group in groups for item in group]))
    pulumi.export("ledger", pulumi.Output.all(*[activated[s] for s in slots]).apply(
        lambda lists: {**gone_slots, **{s.resource_name: {**plan.ledger_item(s, ()), "keys": keys}
                                        for s, keys in zip(slots, lists)}}))
    pulumi.export("verification", pulumi.Output.all(*[zone_of[s].verified for s in slots]).apply(
        lambda lists: sorted({(s.zone, item["via"]) for s, items in zip(slots, lists) for item in items})))


def _host_keys(slots: list[plan.Slot], rings: dict[plan.Slot, KeyRing],
               activated: dict[plan.Slot, pulumi.Output]) -> pulumi.Output[list]:
    def build(args: list[Any]) -> list[dict[str, Any]]:
        n = len(slots)
        entries = []
        for slot, keys, pems, ledger_keys in zip(slots, args[:n], args[n:2 * n], args[2 * n:]):
            current = rotation.active(rotation.SlotLedger.from_list(ledger_keys).entries)
            if current is None:
                continue  # nothing verified yet: the host does not sign for this slot
            key = next(k for k in keys if k["selector"] == current.selector)
            entries.append({"domain": slot.domain, "selector": current.selector, "key_type": key["key_type"],
                            "private_key": pems[current.selector], "sign_for": list(slot.sign_for)})
        return sorted(entries, key=lambda e: (e["domain"], e["selector"]))

    outputs = ([rings[s].keys for s in slots] + [rings[s].private_keys for s in slots]
               + [activated[s] for s in slots])
    return pulumi.Output.all(*outputs).apply(build)


def load_ledger_for_plain_pulumi() -> dict[str, Any]:
    """When run by a plain `pulumi up` (not dkimroll's engine), read the ledger output via the CLI."""
    import subprocess

    result = subprocess.run(["pulumi", "stack", "output", "ledger", "--json"], capture_output=True, text=True,
                            cwd=project_dir(), check=False)
    if result.returncode != 0 or not result.stdout.strip():
        return {}
    return json.loads(result.stdout) or {}
