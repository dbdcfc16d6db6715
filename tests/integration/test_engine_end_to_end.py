"""The foundation, end to end on the real Pulumi engine, BIND, OpenDKIM and dkimpy.

One stack with three domains (shared RSA with extra sender patterns, per-signer
dual RSA + Ed25519, and a t=y domain with a 4096-bit key) on two local signer
hosts. The tests run in file order and share the stack.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.infra.dkimverify import verify
from tests.infra.named import NamedServer
from tests.infra.opendkim import OpenDkimSigner
from tests.infra.project import StackProject

pytestmark = pytest.mark.engine

DOMAINS = ("alpha.test", "beta.test", "gamma.test")


def stack_config() -> dict:
    return {
        "dkimroll:dns": {"lab": {"type": "bind-file", "zone_dir": "zones", "create": True}},
        "dkimroll:signers": {
            "mta1": {"transport": "local", "root": "signers/mta1"},
            "mta2": {"transport": "local", "root": "signers/mta2"},
        },
        "dkimroll:domains": {
            "alpha.test": {"dns": "lab", "signers": ["mta1", "mta2"], "mode": "shared",
                           "algorithm": "rsa-2048", "sign_for": ["*@alpha.test", "*@customer.test"]},
            "beta.test": {"dns": "lab", "signers": ["mta1", "mta2"], "mode": "per-signer",
                          "algorithm": ["rsa-2048", "ed25519"]},
            "gamma.test": {"dns": "lab", "signers": ["mta1"], "algorithm": "rsa-4096", "testing": True},
        },
    }


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Content and mtime of every file dkimroll writes (zones and signer dirs)."""
    files = {}
    for sub in ("zones", "signers"):
        for path in sorted((root / sub).rglob("*")):
            if path.is_file() and not path.name.endswith(".lock"):
                files[str(path.relative_to(root))] = (path.read_bytes(), path.stat().st_mtime_ns)
    return files


def zone_files(root: Path) -> dict[str, Path]:
    return {path.name.removesuffix(".zone"): path for path in sorted((root / "zones").glob("*.zone"))}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> StackProject:
    proj = StackProject(tmp_path_factory.mktemp("e2e"))
    proj.write_config(stack_config())
    return proj


@pytest.fixture(scope="module")
def applied(project: StackProject) -> dict:
    """Preview, then up; returns what each produced."""
    preview = project.run("preview")
    assert not (project.root / "zones").exists(), "preview must write nothing"
    up = project.run("up")
    return {"preview": preview, "up": up}


def test_preview_shows_creates_and_up_applies_them(applied, project):
    preview, up = applied["preview"], applied["up"]
    # The stack, 3 domain components, 6 key slots, 3 zones and 2 signer hosts.
    assert preview.changes.get("create") == 15
    assert up.changes.get("create") == 15
    assert set(zone_files(project.root)) == set(DOMAINS)


def test_zone_files_pass_named_checkzone(applied, project):
    for zone, path in zone_files(project.root).items():
        result = subprocess.run(["named-checkzone", zone, str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_outputs_list_every_record_with_zone_file_form(applied):
    records = applied["up"].outputs["records"]
    names = {r["name"] for r in records}
    # alpha: 1 shared; beta: 2 signers × 2 algorithms; gamma: 1.
    assert len(records) == 6
    assert all(name.endswith(("._domainkey.alpha.test", "._domainkey.beta.test", "._domainkey.gamma.test"))
               for name in names)
    for record in records:
        assert record["zone_file"].startswith(record["name"] + ".")
        assert record["value"].startswith("v=DKIM1; k=")
    gamma = next(r for r in records if r["name"].endswith("gamma.test"))
    assert "; t=y;" in gamma["value"] and len(gamma["value"]) > 700  # 4096-bit: 3+ strings


@pytest.fixture(scope="module")
def named(applied, project, tmp_path_factory):
    with NamedServer(tmp_path_factory.mktemp("named"), zone_files(project.root)) as server:
        yield server


def test_named_serves_multi_string_txt_that_reassembles(applied, named):
    for record in applied["up"].outputs["records"]:
        answers = named.query_txt(record["name"])
        assert len(answers) == 1, "one record, never one record per chunk"
        strings = answers[0]
        assert all(len(s) <= 255 for s in strings)
        if len(record["value"]) > 255:
            assert len(strings) > 1
        assert b"".join(strings).decode() == record["value"]


def _signing_patterns(table: Path) -> list[str]:
    return [line.split()[0] for line in table.read_text().splitlines() if line and not line.startswith("#")]


def _sign_and_verify_all(project: StackProject, named: NamedServer, workdir: Path) -> int:
    """Start OpenDKIM on each host's tables; sign for every pattern; verify with dkimpy."""
    checked = 0
    for host in ("mta1", "mta2"):
        root = project.root / "signers" / host
        for suffix, algorithm in (("", "rsa-sha256"), (".ed25519", "ed25519-sha256")):
            key_table, signing_table = root / f"KeyTable{suffix}", root / f"SigningTable{suffix}"
            if not signing_table.exists() or not _signing_patterns(signing_table):
                continue
            with OpenDkimSigner(workdir, key_table, signing_table, algorithm) as signer:
                for pattern in _signing_patterns(signing_table):
                    sender = pattern.replace("*", "someone")
                    message = signer.sign(sender, "rcpt@example.net", f"test {pattern}", "Hello.\n")
                    results = verify(message, named)
                    assert results, f"{host}: no signature for {pattern}"
                    assert all(ok for ok, _sel, _dom in results), f"{host} {pattern}: {results}"
                    checked += 1
    return checked


def test_opendkim_signs_every_pattern_and_dkimpy_verifies(applied, project, named, tmp_path):
    # mta1: alpha (2 patterns), beta rsa, gamma; mta1 ed25519: beta. mta2: alpha (2), beta rsa; ed25519: beta.
    assert _sign_and_verify_all(project, named, tmp_path) == 9


def test_second_up_changes_nothing(applied, project):
    before = snapshot(project.root)
    again = project.run("up")
    assert set(again.changes) == {"same"}, again.changes
    assert snapshot(project.root) == before


def test_no_private_key_in_engine_output_or_state(applied, project):
    pems = [p.read_text() for p in (project.root / "signers").rglob("*.private")]
    assert pems
    bodies = ["".join(pem.strip().splitlines()[1:-1]) for pem in pems]
    state_files = [p for p in project.raw_state_files() if p.suffix == ".json"]
    assert state_files and any("ciphertext" in p.read_text() for p in state_files)
    texts = [applied["preview"].output, applied["up"].output]
    texts += [p.read_text(errors="replace") for p in project.raw_state_files()]
    for text in texts:
        assert "PRIVATE KEY" not in text
        flat = text.replace("\\n", "").replace("\n", "")
        for body in bodies:
            assert body[40:100] not in flat


def test_key_files_are_private(applied, project):
    for path in (project.root / "signers").rglob("*.private"):
        assert path.stat().st_mode & 0o777 == 0o600


HAND_RECORD = 'hand IN TXT "added by hand; keep me"'


def test_refresh_detects_a_hand_deleted_record_and_up_restores_it(applied, project, named):
    zone = zone_files(project.root)["alpha.test"]
    text = zone.read_text()
    # Add a record by hand (outside dkimroll's block) and delete dkimroll's alpha record.
    block = re.search(r"; BEGIN dkimroll.*?; END dkimroll[^\n]*\n", text, re.S)
    assert block
    zone.write_text(text[: block.start()] + HAND_RECORD + "\n" + text[block.end():])
    refreshed = project.run("refresh")
    assert refreshed.changes.get("update") == 1, refreshed.changes
    restored = project.run("up")
    assert restored.changes.get("update") == 1, restored.changes
    new_text = zone.read_text()
    assert HAND_RECORD in new_text
    named.reload()
    record = next(r for r in applied["up"].outputs["records"] if r["name"].endswith("alpha.test"))
    assert b"".join(named.query_txt(record["name"])[0]).decode() == record["value"]


def test_destroy_removes_exactly_dkimrolls_records_and_files(applied, project):
    zone = zone_files(project.root)["alpha.test"]
    project.run("destroy")
    text = zone.read_text()
    assert HAND_RECORD in text
    assert "_domainkey" not in "".join(z.read_text() for z in zone_files(project.root).values())
    assert not list((project.root / "signers").rglob("*.private"))
    tables = [p for p in (project.root / "signers").rglob("*Table*") if p.is_file()]
    assert not tables
