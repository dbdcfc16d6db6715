"""Pulumi dynamic resource: everything dkimroll keeps on one signer host.

One resource per host holds its key files, its signing tables and its single
reload, so two domains on one host never race. State keeps only the paths and
digests of the files, plus the key list as a secret.

This module path is recorded in Pulumi state: never move or rename it.
"""

from __future__ import annotations

from typing import Any, Optional

import pulumi
from pulumi import dynamic

from providers.resources.unknowns import is_known
from providers.signers.base import SigningKey
from providers.signers.factory import make_layout, make_transport
from providers.signers.sync import digest_matches, inspect, sync, wanted_digest


def _keys(props: dict[str, Any]) -> list[SigningKey]:
    return [
        SigningKey(
            domain=item["domain"],
            selector=item["selector"],
            key_type=item["key_type"],
            private_key_pem=item["private_key"],
            sign_for=tuple(item.get("sign_for") or ()),
        )
        for item in props.get("keys") or []
    ]


def _wanted(props: dict[str, Any]) -> dict[str, str]:
    layout = make_layout(props["signer_name"], props["settings"])
    return {f.path: wanted_digest(f) for f in layout.files(_keys(props))}


def _push(props: dict[str, Any], previous: dict[str, str]) -> dict[str, Any]:
    """Sync the host; `previous` digests let a failed reload be retried on the next run."""
    name, settings = props["signer_name"], props["settings"]
    transport = make_transport(name, settings)
    try:
        result = sync(transport, make_layout(name, settings), _keys(props), list(previous),
                      settings.get("reload"), previous_digests=previous or None)
    finally:
        transport.close()
    outs = {k: v for k, v in props.items() if not k.startswith("__")}
    outs["files"] = dict(sorted(result.digests.items()))
    return outs


class SignerHostProvider(dynamic.ResourceProvider):
    """Pushes a host's files only when their digests differ; reloads only on change."""

    serialize_as_secret_always = False

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        replaces = ["signer_name"] if olds.get("signer_name") != news.get("signer_name") else []
        if not is_known(news.get("keys")) or not is_known(news.get("settings")):
            return dynamic.DiffResult(changes=True, replaces=replaces)
        current = olds.get("files") or {}
        wanted = _wanted(news)
        same_files = set(wanted) == set(current) and all(
            digest_matches(current[path], digest) for path, digest in wanted.items())
        changed = not same_files or olds.get("settings") != news.get("settings")
        return dynamic.DiffResult(changes=changed or bool(replaces), replaces=replaces,
                                  delete_before_replace=bool(replaces))

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        return dynamic.CreateResult(props["signer_name"], _push(props, {}))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        return dynamic.UpdateResult(_push(news, dict(olds.get("files") or {})))

    def read(self, id_: str, props: dict[str, Any]) -> dynamic.ReadResult:
        transport = make_transport(props["signer_name"], props["settings"])
        try:
            current = inspect(transport, list((props.get("files") or {}).keys()))
        finally:
            transport.close()
        outs = dict(props)
        outs["files"] = {path: digest for path, digest in sorted(current.items()) if digest is not None}
        return dynamic.ReadResult(id_, outs)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        """Remove every file dkimroll put on the host (tables included), then reload once."""
        transport = make_transport(props["signer_name"], props["settings"])
        try:
            existing = [path for path, digest in inspect(transport, list(props.get("files") or {})).items()
                        if digest is not None]
            for path in existing:
                transport.remove(path)
            reload = props["settings"].get("reload")
            if existing and reload:
                transport.run(reload)
        finally:
            transport.close()


class SignerHost(dynamic.Resource, module="dkimroll", name="SignerHost"):
    """The private keys and signing tables of one signer host."""

    files: pulumi.Output[dict]

    def __init__(
        self,
        resource_name: str,
        *,
        signer_name: str,
        settings: pulumi.Input[dict],
        keys: pulumi.Input[list],
        opts: Optional[pulumi.ResourceOptions] = None,
    ) -> None:
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["keys", "settings"]))
        super().__init__(
            SignerHostProvider(),
            resource_name,
            {"signer_name": signer_name, "settings": settings, "keys": pulumi.Output.secret(keys), "files": None},
            opts,
        )
