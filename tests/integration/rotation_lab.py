"""A small mail lab for rotation tests: zone files served by a real named, one local signer,
the real OpenDKIM to sign and dkimpy to verify against that named."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from keys import clock, rotation
from tests.infra.dkimverify import verify
from tests.infra.named import RNDC, NamedServer
from tests.infra.opendkim import OpenDkimSigner
from tests.infra.project import StackProject

SIGNER = "mta"


def zone_file(path: Path, zone: str) -> None:
    path.write_text(
        f"$TTL 300\n@ IN SOA ns1.{zone}. hostmaster.{zone}. ( 1 3600 900 1209600 300 )\n"
        f"@ IN NS ns1.{zone}.\nns1 IN A 127.0.0.1\n"
    )


@dataclass
class Lab:
    project: StackProject
    named: NamedServer
    work: Path
    domains: dict[str, dict] = field(default_factory=dict)
    reload: bool = True
    verify_timeout: float = 10.0

    def config(self) -> dict:
        reload = f"{RNDC} -c {self.named.rndc_conf_path} reload {{zone}}"
        target = {"type": "bind-file", "zone_dir": str(self.project.root / "zones"), "create": False,
                  "nameservers": [f"{self.named.address}:{self.named.port}"],
                  "verify_timeout": self.verify_timeout}
        if self.reload:
            target["reload"] = reload
        domains = {name: {"dns": "lab", "signers": [SIGNER], **spec} for name, spec in self.domains.items()}
        return {
            "dkimroll:dns": {"lab": target},
            "dkimroll:signers": {SIGNER: {"transport": "local", "root": "signers/mta"}},
            "dkimroll:domains": domains,
        }

    def up(self, when: datetime, **kwargs):
        self.project.write_config(self.config())
        return self.project.run("up", now=clock.iso(when), **kwargs)

    def ledger(self) -> dict:
        return self.project.outputs().get("ledger") or {}

    def sign_all(self, subject: str) -> list[bytes]:
        """Sign one message per domain (and per algorithm instance) with what the signer holds."""
        root = self.project.root / "signers" / SIGNER
        messages = []
        for suffix, algorithm in (("", "rsa-sha256"), (".ed25519", "ed25519-sha256")):
            table = root / f"SigningTable{suffix}"
            patterns = [line.split()[0] for line in table.read_text().splitlines()
                        if line and not line.startswith("#")] if table.exists() else []
            if not patterns:
                continue
            with OpenDkimSigner(self.work, root / f"KeyTable{suffix}", table, algorithm) as signer:
                for pattern in patterns:
                    messages.append(signer.sign(pattern.replace("*", "user"), "rcpt@example.net",
                                                subject, "Rotation test.\n"))
        return messages

    def verify_all(self, messages: list[bytes]) -> list[str]:
        """Failures, as readable strings (empty when every signature verifies)."""
        failures = []
        for message in messages:
            results = verify(message, self.named)
            if not results or not all(ok for ok, _sel, _dom in results):
                failures.append(repr([(r[0], r[1], r[2], getattr(r, "reason", "")) for r in results]))
        return failures


def entries(ledger: dict, slot_id: str) -> tuple[rotation.KeyEntry, ...]:
    return rotation.SlotLedger.from_list((ledger.get(slot_id) or {}).get("keys")).entries
