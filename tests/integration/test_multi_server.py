"""Multi-server modes on the real engine: shared keys and per-signer selectors.

Signer hosts here are local directories (the SSH transport has its own tests);
what is tested is what each mode promises when signers come and go.
"""

from __future__ import annotations

import copy

import pytest

from tests.infra.project import StackProject

pytestmark = pytest.mark.engine

T0 = "2026-12-03T00:00:00Z"
SIGNERS = {name: {"transport": "local", "root": f"signers/{name}"} for name in ("svr1", "svr2", "svr3")}


def config(shared_signers: list[str], per_signer: list[str]) -> dict:
    return {
        "dkimroll:dns": {"lab": {"type": "bind-file", "zone_dir": "zones", "create": True}},
        "dkimroll:signers": copy.deepcopy(SIGNERS),
        "dkimroll:domains": {
            "shared.test": {"dns": "lab", "signers": shared_signers, "mode": "shared"},
            "split.test": {"dns": "lab", "signers": per_signer, "mode": "per-signer",
                           "selector": "{signer}", "rotation": {"retain": "7d"}},
        },
    }


def key_files(project: StackProject, host: str) -> dict[str, bytes]:
    root = project.root / "signers" / host / "keys"
    return {p.name: p.read_bytes() for p in sorted(root.glob("*.private"))} if root.exists() else {}


def zone_text(project: StackProject, zone: str) -> str:
    return (project.root / "zones" / f"{zone}.zone").read_text()


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> StackProject:
    proj = StackProject(tmp_path_factory.mktemp("multi"))
    proj.write_config(config(["svr1", "svr2"], ["svr1", "svr2"]))
    proj.run("up", now=T0)
    return proj


def test_shared_mode_puts_the_same_key_on_every_signer(project):
    svr1, svr2 = key_files(project, "svr1"), key_files(project, "svr2")
    shared = [name for name in svr1 if name.endswith("shared.test.private")]
    assert len(shared) == 1 and svr1[shared[0]] == svr2[shared[0]]


def test_per_signer_mode_gives_each_signer_its_own_selector_all_published(project):
    assert "svr1._domainkey.split.test.private" in key_files(project, "svr1")
    assert "svr2._domainkey.split.test.private" in key_files(project, "svr2")
    assert "svr2._domainkey.split.test.private" not in key_files(project, "svr1")
    text = zone_text(project, "split.test")
    assert "svr1._domainkey.split.test." in text and "svr2._domainkey.split.test." in text


def test_adding_a_signer_in_shared_mode_pushes_the_existing_key_and_makes_none(project):
    before = key_files(project, "svr1")
    zone_before = zone_text(project, "shared.test")
    project.write_config(config(["svr1", "svr2", "svr3"], ["svr1", "svr2"]))
    result = project.run("up", now=T0)
    assert result.changes.get("create") == 1  # the svr3 host resource only
    svr3 = key_files(project, "svr3")
    assert svr3 == {k: v for k, v in before.items() if k.endswith("shared.test.private")}
    assert zone_text(project, "shared.test") == zone_before


def test_removing_a_per_signer_signer_removes_its_files_and_keeps_its_record_for_retain(project):
    project.write_config(config(["svr1", "svr2", "svr3"], ["svr1"]))
    project.run("up", now=T0)
    assert "svr2._domainkey.split.test.private" not in key_files(project, "svr2")
    table = (project.root / "signers" / "svr2" / "SigningTable").read_text()
    assert "split.test" not in table
    assert "svr2._domainkey.split.test." in zone_text(project, "split.test"), "still within retain"

    within = project.run("up", now="2026-12-09T23:00:00Z")
    assert set(within.changes) == {"same"}, within.changes
    assert "svr2._domainkey.split.test." in zone_text(project, "split.test")

    after = project.run("up", now="2026-12-10T00:00:01Z")
    assert after.changes.get("update") == 1, after.changes
    text = zone_text(project, "split.test")
    assert "svr2._domainkey.split.test." not in text and "svr1._domainkey.split.test." in text


def test_removing_a_domain_keeps_its_records_for_retain_then_withdraws_them(project):
    base = config(["svr1", "svr2", "svr3"], ["svr1"])
    del base["dkimroll:domains"]["shared.test"]
    project.write_config(base)
    removed = project.run("up", now="2026-12-11T00:00:00Z")
    assert removed.changes.get("delete"), removed.changes  # its key ring and domain component
    assert not any(name.endswith("shared.test.private") for name in key_files(project, "svr1"))
    assert "._domainkey.shared.test." in zone_text(project, "shared.test"), "published for retain"

    quiet = project.run("up", now="2026-12-17T00:00:00Z")
    assert set(quiet.changes) == {"same"}, quiet.changes
    project.run("up", now="2026-12-18T00:00:01Z")
    assert "._domainkey.shared.test." not in zone_text(project, "shared.test")
