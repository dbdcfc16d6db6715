"""Pulumi dynamic resource: the private keys of one signing slot (domain × slot × algorithm).

The program decides which selectors a slot needs (keys.rotation); this
resource only makes sure a key exists for each of them and forgets keys that
are no longer needed. Keys are generated inside `create`/`update`, so they
exist only in Pulumi state (as secrets) and on signer hosts. A selector that
is still wanted keeps its key across runs, whatever else changes.

This module path is recorded in Pulumi state: never move or rename it.
"""

from __future__ import annotations

from typing import Any, Optional

import pulumi
from pulumi import dynamic

from keys import clock, keygen
from providers.resources.unknowns import is_known


def _describe(selector: str, private: keygen.PrivateKey, imported: bool) -> dict[str, Any]:
    return {
        "selector": selector,
        "algorithm": f"rsa-{private.bits}" if private.key_type == "rsa" else "ed25519",
        "key_type": private.key_type,
        "bits": private.bits,
        "p": keygen.public_p_value(private),
        "created": clock.iso(clock.now()),
        "imported": imported,
    }


def _wanted(props: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["selector"]: item for item in props.get("wanted") or []}


def _converge(props: dict[str, Any], olds: dict[str, Any]) -> dict[str, Any]:
    """Keep keys still wanted (same algorithm), make the missing ones, drop the rest."""
    old_keys = {key["selector"]: key for key in olds.get("keys") or []}
    old_pems = olds.get("private_keys") or {}
    keys, pems = [], {}
    for selector, item in sorted(_wanted(props).items()):
        kept = old_keys.get(selector)
        if kept is not None and selector in old_pems and (kept["algorithm"] == item["algorithm"] or kept["imported"]):
            keys.append(kept)
            pems[selector] = old_pems[selector]
            continue
        imported = bool(item.get("use_import") and props.get("imported_key"))
        if imported:
            private = keygen.import_pem(props["imported_key"])
        else:
            private = keygen.generate(keygen.parse_algorithm(item["algorithm"]))
        keys.append(_describe(selector, private, imported))
        pems[selector] = private.pem
    outs = {k: v for k, v in props.items() if not k.startswith("__")}
    outs["keys"] = keys
    outs["private_keys"] = pems
    return outs


class KeyRingProvider(dynamic.ResourceProvider):
    """Owns key generation; the rest of the stack only ever sees public values and secrets."""

    serialize_as_secret_always = False

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        replaces = [k for k in ("domain", "slot") if olds.get(k) != news.get(k)]
        if not is_known(news.get("wanted")) or not is_known(news.get("imported_key")):
            return dynamic.DiffResult(changes=True, replaces=replaces)
        held = {(key["selector"], key["algorithm"]) for key in olds.get("keys") or []}
        imported = {key["selector"] for key in olds.get("keys") or [] if key.get("imported")}
        wanted = {(item["selector"], item["algorithm"]) for item in news.get("wanted") or []}
        missing = {pair for pair in wanted - held if pair[0] not in imported}
        extra = {sel for sel, _alg in held} - {sel for sel, _alg in wanted}
        changed = bool(missing or extra)
        return dynamic.DiffResult(changes=changed or bool(replaces), replaces=replaces,
                                  delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        ring_id = f"{props['domain']}/{props['slot']}/{props['key_type']}"
        return dynamic.CreateResult(ring_id, _converge(props, {}))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        return dynamic.UpdateResult(_converge(news, olds))

    def read(self, id_: str, props: dict[str, Any]) -> dynamic.ReadResult:
        return dynamic.ReadResult(id_, props)


class KeyRing(dynamic.Resource, module="dkimroll", name="KeyRing"):
    """The keys one slot signs with. `private_keys` is always a secret."""

    keys: pulumi.Output[list]
    private_keys: pulumi.Output[dict]

    def __init__(
        self,
        resource_name: str,
        *,
        domain: str,
        slot: str,
        key_type: str,
        wanted: list[dict[str, Any]],
        imported_key: pulumi.Input[str] | None = None,
        opts: Optional[pulumi.ResourceOptions] = None,
    ) -> None:
        """`wanted`: [{selector, algorithm, use_import}] — every key the slot must hold now."""
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=["private_keys", "imported_key"])
        )
        super().__init__(
            KeyRingProvider(),
            resource_name,
            {
                "domain": domain,
                "slot": slot,
                "key_type": key_type,
                "wanted": wanted,
                "imported_key": pulumi.Output.secret(imported_key) if imported_key is not None else None,
                "keys": None,
                "private_keys": None,
            },
            opts,
        )
