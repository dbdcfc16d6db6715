"""The DNS gate and emergency rotation, on the real engine, named and OpenDKIM."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import pytest

from dkimroll import cli
from keys import clock, rotation
from tests.infra.named import NamedServer
from tests.infra.project import StackProject
from tests.integration.rotation_lab import SIGNER, Lab, entries, zone_file

pytestmark = pytest.mark.engine

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)
DOMAIN = "gate.test"
SLOT = f"{DOMAIN}/shared/rsa"
POLICY = {"algorithm": "rsa-2048", "selector": "g{yyyy}{mm}{dd}",
          "rotation": {"every": "30d", "publish_ahead": "1d", "retain": "2d", "revoke": "empty-p"}}


@pytest.fixture
def lab(tmp_path) -> Lab:
    project = StackProject(tmp_path / "project")
    (project.root / "zones").mkdir()
    zone_file(project.root / "zones" / f"{DOMAIN}.zone", DOMAIN)
    with NamedServer(tmp_path / "named", {DOMAIN: project.root / "zones" / f"{DOMAIN}.zone"}) as named:
        lab = Lab(project, named, tmp_path / "work", domains={DOMAIN: POLICY}, verify_timeout=3.0)
        lab.up(T0)
        yield lab


def signing_selector(lab: Lab) -> str:
    table = (lab.project.root / "signers" / SIGNER / "SigningTable").read_text()
    return next(line.split()[1] for line in table.splitlines() if line.startswith("*@")).split(".")[0]


def test_a_key_nobody_serves_never_signs_and_the_old_one_keeps_signing(lab: Lab):
    first = entries(lab.ledger(), SLOT)[0].selector
    lab.reload = False  # the zone file changes, but named keeps serving the old zone
    lab.up(T0 + timedelta(days=30))
    due = lab.up(T0 + timedelta(days=31, hours=1))
    assert "stays published, not signing" in due.output
    phases = {e.selector: e.phase for e in entries(lab.ledger(), SLOT)}
    assert phases[first] == rotation.ACTIVE and list(phases.values()).count(rotation.PUBLISHED) == 1
    assert signing_selector(lab) == first
    assert not lab.verify_all(lab.sign_all("old key still signs"))

    lab.named.reload()  # the record becomes visible; the next run activates it
    lab.reload = True
    lab.up(T0 + timedelta(days=31, hours=2))
    phases = {e.selector: e.phase for e in entries(lab.ledger(), SLOT)}
    assert phases[first] == rotation.RETIRED
    assert signing_selector(lab) != first
    assert not lab.verify_all(lab.sign_all("new key signs"))


def test_requested_rotation_publishes_now_and_activates_after_publish_ahead(lab: Lab):
    first = entries(lab.ledger(), SLOT)[0].selector
    lab.up(T0 + timedelta(days=3), rotate={"domain": DOMAIN, "compromised": False})
    assert signing_selector(lab) == first, "not before publish_ahead"
    assert len(entries(lab.ledger(), SLOT)) == 2
    lab.up(T0 + timedelta(days=4))
    assert signing_selector(lab) != first
    retired = {e.selector: e for e in entries(lab.ledger(), SLOT)}[first]
    assert retired.phase == rotation.RETIRED, "kept published for retain, not revoked"


def test_compromised_rotation_activates_at_once_and_revokes_the_old_key(lab: Lab, capsys):
    first = entries(lab.ledger(), SLOT)[0].selector
    old_messages = lab.sign_all("signed with the compromised key")
    lab.project.write_config(lab.config())
    os.environ["DKIMROLL_NOW"] = clock.iso(T0 + timedelta(days=3))
    try:
        code = cli.main(["rotate", DOMAIN, "--compromised", "--stack", lab.project.stack,
                         "--project-dir", str(lab.project.root)])
    finally:
        os.environ.pop("DKIMROLL_NOW")
    assert code == 0
    assert "mail in flight signed with the old key will fail" in capsys.readouterr().out
    by_selector = {e.selector: e for e in entries(lab.ledger(), SLOT)}
    assert by_selector[first].phase == rotation.REVOKED
    assert signing_selector(lab) != first
    lab.named.reload()
    served = [b"".join(strings).decode() for strings in lab.named.query_txt(f"{first}._domainkey.{DOMAIN}")]
    assert served == ["v=DKIM1; k=rsa; p="], served
    assert lab.verify_all(old_messages), "signatures of the revoked key must fail now"
    assert not lab.verify_all(lab.sign_all("new key"))
