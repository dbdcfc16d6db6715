"""Pulumi dynamic resource: all of dkimroll's TXT records in one DNS zone.

One resource per (target, zone) is one atomic change on the backend per run,
so parallel steps never race on a zone file or a change batch. The provider
builds its backend inside each method (nothing captured), and compares records
by their joined text, so chunking can never cause a diff.

This module path is recorded in Pulumi state: never move or rename it.
"""

from __future__ import annotations

from typing import Any, Optional

import pulumi
from pulumi import dynamic

from keys import clock, retention
from providers.dns.base import TxtRecord
from providers.dns import gate
from providers.dns.factory import make_dns_backend
from providers.errors import DkimrollError
from providers.resources.unknowns import is_known

_IDENTITY = ("target_name", "zone")


def _as_records(items: Any) -> set[TxtRecord]:
    return {TxtRecord.from_dict(item) for item in items or []}


def _records(props: dict[str, Any]) -> set[TxtRecord]:
    return _as_records(props.get("records"))


def _settings(props: dict[str, Any]) -> dict[str, Any]:
    return dict(props.get("target") or {})


class DnsZoneProvider(dynamic.ResourceProvider):
    """CRUD for one zone's managed records; state holds exactly what was written."""

    serialize_as_secret_always = False

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.CheckResult:
        if not is_known(news.get("target")) or not is_known(news.get("records")):
            return dynamic.CheckResult(news, [])
        if olds and all(olds.get(k) == news.get(k) for k in ("target", "zone", "records")):
            return dynamic.CheckResult(news, [])  # nothing to write: a no-op run asks no backend
        try:
            backend = make_dns_backend(news["target_name"], news["target"])
            problems = backend.check(news["zone"], sorted(_records(news)))
        except DkimrollError as exc:
            problems = [str(exc)]
        failures = [dynamic.CheckFailure("", f"dns target '{news['target_name']}', zone {news['zone']}: {p}")
                    for p in problems]
        return dynamic.CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        replaces = [key for key in _IDENTITY if olds.get(key) != news.get(key)]
        if _settings(olds).get("type") != _settings(news).get("type"):
            replaces.append("target")
        if not is_known(news.get("records")):
            return dynamic.DiffResult(changes=True, replaces=replaces, delete_before_replace=False)
        verified = {(item["name"], item["value"]) for item in olds.get("verified") or []}
        unverified = [r for r in _records(news) if (r.name, r.value) not in verified]
        changed = (_records(olds) != _records(news) or _settings(olds) != _settings(news)
                   or retention.has_expired(olds.get("retiring") or [], clock.now()) or bool(unverified))
        return dynamic.DiffResult(changes=changed or bool(replaces), replaces=replaces,
                                  delete_before_replace=bool(replaces))

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        backend = make_dns_backend(props["target_name"], props["target"])
        backend.apply(props["zone"], sorted(_records(props)), [])
        verified, unverified = gate.verify(backend, props["target"], props["zone"], _records(props), [])
        outs = {**props, "retiring": [], "verified": verified, "unverified": unverified}
        return dynamic.CreateResult(f"{props['target_name']}/{props['zone']}", outs)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        backend = make_dns_backend(news["target_name"], news["target"])
        step = retention.plan_zone_step(olds.get("records") or [], olds.get("retiring") or [],
                                        news.get("records") or [], clock.now(),
                                        frozenset(news.get("withdraw") or []))
        backend.apply(news["zone"], sorted(_as_records(step.add)), sorted(_as_records(step.remove)))
        verified, unverified = gate.verify(backend, news["target"], news["zone"], _records(news),
                                           olds.get("verified") or [])
        return dynamic.UpdateResult({**news, "retiring": list(step.retiring), "verified": verified,
                                     "unverified": unverified})

    def read(self, id_: str, props: dict[str, Any]) -> dynamic.ReadResult:
        """Refresh: keep only the records the backend still holds, so `up` repairs the rest."""
        backend = make_dns_backend(props["target_name"], props["target"])
        present = {(r.name, r.value) for r in backend.present(props["zone"], sorted(
            _as_records([*(props.get("records") or []), *(props.get("retiring") or [])])))}
        outs = dict(props)
        outs["records"] = [r for r in props.get("records") or [] if (r["name"], r["value"]) in present]
        outs["retiring"] = [r for r in props.get("retiring") or [] if (r["name"], r["value"]) in present]
        outs["verified"] = [r for r in props.get("verified") or [] if (r["name"], r["value"]) in present]
        return dynamic.ReadResult(id_, outs)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        backend = make_dns_backend(props["target_name"], props["target"])
        everything = [*(props.get("records") or []), *(props.get("retiring") or [])]
        backend.apply(props["zone"], [], sorted(_as_records(everything)))


class DnsZone(dynamic.Resource, module="dkimroll", name="DnsZone"):
    """The managed DKIM records of one zone on one DNS target."""

    records: pulumi.Output[list]
    retiring: pulumi.Output[list]
    verified: pulumi.Output[list]  # records confirmed served: [{name, value, via}]
    unverified: pulumi.Output[list]  # records not confirmed yet: [{name, value, reason}]

    def __init__(
        self,
        resource_name: str,
        *,
        target_name: str,
        target: pulumi.Input[dict],
        zone: str,
        records: pulumi.Input[list],
        withdraw: list[str] | None = None,
        opts: Optional[pulumi.ResourceOptions] = None,
    ) -> None:
        """`withdraw`: owner names rotation removes on purpose this run (no second retain period)."""
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["target"]))
        super().__init__(
            DnsZoneProvider(),
            resource_name,
            {"target_name": target_name, "target": target, "zone": zone, "records": records, "withdraw": withdraw or [], "retiring": None,
             "verified": None, "unverified": None},
            opts,
        )
