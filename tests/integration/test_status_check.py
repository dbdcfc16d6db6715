"""`dkimroll status` and `dkimroll check` on real stacks: the engine, BIND named, dkimpy.

The first stack publishes into a zone file that a real named serves (the
bind-file target reloads it through rndc and verifies against that named
only). The tests run in file order: healthy first, then a hand edit of the
zone breaks one key. A second stack without nameservers is verified only
through its zone file, which status and check must say proves less.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dkimroll import commands
from keys import clock, keygen
from keys import record as dkim_record
from providers.dns.bindfile import find_soa_serial
from tests.infra.named import RNDC, NamedServer
from tests.infra.project import StackProject

pytestmark = pytest.mark.engine

NOW = "2026-03-02T08:00:00Z"
ZONE = "good.test"


def zone_text(zone: str) -> str:
    return (f"$TTL 300\n@ IN SOA ns1.{zone}. hostmaster.{zone}. ( 1 3600 900 1209600 300 )\n"
            f"@ IN NS ns1.{zone}.\nns1 IN A 127.0.0.1\n")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    project = StackProject(tmp_path_factory.mktemp("status-check"))
    zones = project.root / "zones"
    zones.mkdir()
    zone_file = zones / f"{ZONE}.zone"
    zone_file.write_text(zone_text(ZONE))
    with NamedServer(tmp_path_factory.mktemp("named"), {ZONE: zone_file}) as named:
        reload = (f"{RNDC} -c {named.rndc_conf_path} -s {named.address} -p {named.control_port} "
                  "reload {zone}")
        project.write_config({
            "dkimroll:dns": {"lab": {"type": "bind-file", "zone_dir": "zones", "create": False,
                                     "reload": reload, "nameservers": [f"{named.address}:{named.port}"],
                                     "verify_timeout": 20}},
            "dkimroll:signers": {"mta1": {"transport": "local", "root": "signers/mta1"}},
            "dkimroll:domains": {ZONE: {"dns": "lab", "signers": ["mta1"], "algorithm": ["rsa-2048", "ed25519"]}},
        })
        up = project.run("up", now=NOW)
        yield {"project": project, "named": named, "zone_file": zone_file, "outputs": up.outputs}


@pytest.fixture
def at_now(monkeypatch):
    monkeypatch.setenv("DKIMROLL_NOW", NOW)


def run_status(project: StackProject, capsys, as_json: bool = False) -> tuple[int, str]:
    capsys.readouterr()
    code = commands.status(project.stack, project.root, as_json)
    return code, capsys.readouterr().out


def run_check(project: StackProject, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = commands.check(project.stack, project.root)
    return code, capsys.readouterr().out


def test_check_passes_on_a_healthy_stack(lab, capsys, at_now):
    code, out = run_check(lab["project"], capsys)
    assert code == 0, out
    records = lab["outputs"]["records"]
    assert len(records) == 2
    for record in records:
        assert any(line.startswith("OK") and "dns" in line and record["name"] in line for line in out.splitlines())
        assert any(line.startswith("OK") and "signature" in line and record["name"] in line
                   for line in out.splitlines()), out
    assert "rsa-sha256 signature verifies" in out and "ed25519-sha256 signature verifies" in out
    assert "FAIL" not in out and "proves less" not in out
    assert "PRIVATE KEY" not in out


def test_status_shows_active_keys_without_warnings(lab, capsys, at_now):
    code, out = run_status(lab["project"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["DOMAIN", "SELECTOR", "ALG", "PHASE", "AGE", "SIGNERS", "NEXT", "WARNINGS"]
    rows = [line.split() for line in lines[1:] if line.startswith(ZONE)]
    assert len(rows) == 2
    assert {row[2] for row in rows} == {"rsa-2048", "ed25519"}
    for row in rows:
        assert row[3] == "active" and row[5] == "mta1" and row[6] == "rotate" and row[-1] == "-", out
    assert "proves less" not in out
    assert lines[-1] == "2 key(s), 0 with warnings"


def test_status_json_has_one_row_per_key(lab, capsys, at_now):
    code, out = run_status(lab["project"], capsys, as_json=True)
    assert code == 0
    rows = json.loads(out)
    ledger = lab["project"].outputs()["ledger"]
    keys = [(item["domain"], key["selector"]) for item in ledger.values() for key in item["keys"]]
    assert sorted((row["domain"], row["selector"]) for row in rows) == sorted(keys)
    assert len(rows) == 2
    for row in rows:
        assert row["phase"] == "active" and row["signers"] == ["mta1"] and row["warnings"] == []
        assert row["verified_via"] == "nameservers"
        assert clock.parse_iso(row["next_at"]) > clock.parse_iso(NOW)


def _break_ed25519_record(lab) -> str:
    """Hand-edit the zone: the Ed25519 record gets another key's p=; reload named. Returns its name."""
    record = next(r for r in lab["outputs"]["records"] if "k=ed25519" in r["value"])
    stranger = keygen.generate(keygen.parse_algorithm("ed25519"))
    wrong = dkim_record.build(dkim_record.DkimRecord(k="ed25519", p=keygen.public_p_value(stranger)))
    path: Path = lab["zone_file"]
    text = path.read_text()
    assert text.count(record["value"]) == 1
    text = text.replace(record["value"], wrong)
    start, end = find_soa_serial(text)
    text = text[:start] + str(int(text[start:end]) + 1) + text[end:]
    path.write_text(text)
    lab["named"].reload(ZONE)
    served = [b"".join(strings).decode() for strings in lab["named"].query_txt(record["name"])]
    assert served == [wrong]
    return record["name"]


@pytest.fixture(scope="module")
def broken(lab) -> str:
    return _break_ed25519_record(lab)


def test_check_fails_naming_the_record_that_differs(lab, broken, capsys, at_now):
    code, out = run_check(lab["project"], capsys)
    assert code == 1, out
    failed = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert any("dns" in line and broken in line and "serves a different value" in line for line in failed), out
    assert any("signature" in line and broken in line for line in failed), out
    # The RSA key is untouched and still passes.
    rsa = next(r["name"] for r in lab["outputs"]["records"] if "k=rsa" in r["value"])
    assert all(rsa not in line for line in failed)
    assert "check: 2 ok, 2 failed" in out


def test_status_shows_dns_differs_for_the_broken_key(lab, broken, capsys, at_now):
    code, out = run_status(lab["project"], capsys)
    assert code == 0
    selector = broken.split("._domainkey.")[0]
    row = next(line for line in out.splitlines() if f" {selector} " in line)
    assert "DNS differs from expected" in row
    assert out.splitlines()[-1] == "2 key(s), 1 with warnings"


def test_status_reports_an_unreachable_nameserver_as_a_warning(lab, capsys, at_now):
    """Status survives a nameserver that does not answer (short timeouts, no crash)."""
    project: StackProject = lab["project"]
    config = project.stack_file.read_text()
    named = lab["named"]
    dead = f"{named.address}:{named.port}"
    # A loopback port nothing listens on (named's rndc channel speaks no DNS over UDP).
    project.stack_file.write_text(config.replace(dead, f"{named.address}:{named.control_port}"))
    try:
        code, out = run_status(project, capsys)
    finally:
        project.stack_file.write_text(config)
    assert code == 0
    assert out.count("DNS lookup failed") == 2, out


@pytest.fixture(scope="module")
def backend_project(tmp_path_factory) -> StackProject:
    project = StackProject(tmp_path_factory.mktemp("backend-only"))
    project.write_config({
        "dkimroll:dns": {"files": {"type": "bind-file", "zone_dir": "zones", "create": True}},
        "dkimroll:domains": {"file.test": {"dns": "files", "algorithm": "rsa-2048"}},
    })
    project.run("up", now=NOW)
    return project


def test_backend_verified_stack_says_it_proves_less(backend_project, capsys, at_now):
    code, out = run_status(backend_project, capsys)
    assert code == 0
    assert "file.test: checked through the zone file, not by DNS queries (proves less)" in out.splitlines()
    code, out = run_check(backend_project, capsys)
    assert code == 0, out
    assert "proves less" in out and "file.test" in out
