"""Pulumi dynamic resource: the keys of one signing slot (domain × signer slot × algorithm).

Keys are generated inside `create`/`update`, so they exist only in Pulumi
state (as secrets) and on signer hosts. The selector is rendered from its
template at the moment a key is made and then kept, so a monthly template
does not roll keys monthly by itself.

This module path is recorded in Pulumi state: never move or rename it.
"""

from __future__ import annotations

from typing import Any, Optional

import pulumi
from pulumi import dynamic

from keys import clock, keygen, selector as selectors
from providers.resources.unknowns import is_known


def _new_key(props: dict[str, Any], taken: set[str]) -> tuple[dict[str, Any], str]:
    """Make (or import) one key; return its public description and its PEM."""
    spec = keygen.parse_algorithm(props["algorithm"])
    now = clock.now()
    selector = selectors.render_selector(
        props["selector_template"], now, signer=props.get("signer") or None, alg=spec.key_type
    )
    base, suffix = selector, 2
    while selector in taken:  # a second key in the same period gets a distinct selector
        selector, suffix = f"{base}-{suffix}", suffix + 1
    imported = props.get("imported_key")
    private = keygen.import_pem(imported) if imported else keygen.generate(spec)
    info = {
        "selector": selector,
        "algorithm": f"rsa-{private.bits}" if private.key_type == "rsa" else "ed25519",
        "key_type": private.key_type,
        "bits": private.bits,
        "p": keygen.public_p_value(private),
        "created": clock.iso(now),
        "imported": bool(imported),
    }
    return info, private.pem


def _outputs(props: dict[str, Any], keys: list[dict[str, Any]], pems: dict[str, str]) -> dict[str, Any]:
    outs = {k: v for k, v in props.items() if not k.startswith("__")}
    outs["keys"] = keys
    outs["private_keys"] = pems
    return outs


class KeyRingProvider(dynamic.ResourceProvider):
    """Owns key generation; the rest of the stack only ever sees public values and secrets."""

    serialize_as_secret_always = False

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        replaces = [k for k in ("domain", "slot") if olds.get(k) != news.get(k)]
        watched = ("algorithm", "imported_key")
        changed = any(olds.get(k) != news.get(k) for k in watched)
        if not all(is_known(news.get(k)) for k in watched):
            changed = True
        return dynamic.DiffResult(changes=changed or bool(replaces), replaces=replaces,
                                  delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        info, pem = _new_key(props, set())
        ring_id = f"{props['domain']}/{props['slot']}/{keygen.parse_algorithm(props['algorithm']).key_type}"
        return dynamic.CreateResult(ring_id, _outputs(props, [info], {info["selector"]: pem}))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        taken = {key["selector"] for key in olds.get("keys") or []}
        info, pem = _new_key(news, taken)
        return dynamic.UpdateResult(_outputs(news, [info], {info["selector"]: pem}))

    def read(self, id_: str, props: dict[str, Any]) -> dynamic.ReadResult:
        return dynamic.ReadResult(id_, props)


class KeyRing(dynamic.Resource, module="dkimroll", name="KeyRing"):
    """The key(s) one slot signs with. `private_keys` is always a secret."""

    keys: pulumi.Output[list]
    private_keys: pulumi.Output[dict]

    def __init__(
        self,
        resource_name: str,
        *,
        domain: str,
        slot: str,
        algorithm: str,
        selector_template: str,
        signer: str | None = None,
        imported_key: pulumi.Input[str] | None = None,
        opts: Optional[pulumi.ResourceOptions] = None,
    ) -> None:
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=["private_keys", "imported_key"])
        )
        super().__init__(
            KeyRingProvider(),
            resource_name,
            {
                "domain": domain,
                "slot": slot,
                "algorithm": algorithm,
                "selector_template": selector_template,
                "signer": signer,
                "imported_key": pulumi.Output.secret(imported_key) if imported_key is not None else None,
                "keys": None,
                "private_keys": None,
            },
            opts,
        )
