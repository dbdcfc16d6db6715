"""The two-server scenario over real SSH, on the real engine, in both modes.

Two OpenSSH hosts (each its own host key) receive keys and OpenDKIM tables from
`pulumi up`; each host's OpenDKIM then signs for each of its domains and dkimpy
verifies against a real named serving the zones dkimroll published.
"""

from __future__ import annotations

import pytest

from tests.infra.dkimverify import verify
from tests.infra.named import RNDC, NamedServer
from tests.infra.opendkim import OpenDkimSigner
from tests.infra.project import StackProject
from tests.infra.sshd import SshServer
from tests.integration.rotation_lab import zone_file

pytestmark = pytest.mark.engine

DOMAINS = ("shared.test", "split.test")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    work = tmp_path_factory.mktemp("ssh-lab")
    project = StackProject(work / "project")
    (project.root / "zones").mkdir()
    for domain in DOMAINS:
        zone_file(project.root / "zones" / f"{domain}.zone", domain)
    with NamedServer(work / "named", {d: project.root / "zones" / f"{d}.zone" for d in DOMAINS}) as named, \
            SshServer(work / "svr1") as svr1, SshServer(work / "svr2") as svr2:
        hosts = {"svr1": svr1, "svr2": svr2}
        signers = {
            name: {"transport": "ssh", "host": "127.0.0.1", "port": host.port, "user": "root",
                   "known_hosts": str(host.known_hosts), "identity_file": str(host.identity_file),
                   "use_agent": False, "software": "opendkim",
                   "key_dir": str(work / "hosts" / name / "etc/opendkim/keys"),
                   "table_dir": str(work / "hosts" / name / "etc/opendkim")}
            for name, host in hosts.items()
        }
        project.write_config({
            "dkimroll:dns": {"lab": {
                "type": "bind-file", "zone_dir": "zones",
                "reload": f"{RNDC} -c {named.rndc_conf_path} reload {{zone}}",
                "nameservers": [f"{named.address}:{named.port}"], "verify_timeout": 20}},
            "dkimroll:signers": signers,
            "dkimroll:domains": {
                "shared.test": {"dns": "lab", "signers": ["svr1", "svr2"], "mode": "shared",
                                "sign_for": ["*@shared.test", "*@customer.test"]},
                "split.test": {"dns": "lab", "signers": ["svr1", "svr2"], "mode": "per-signer",
                               "selector": "{signer}-{alg}", "algorithm": ["rsa-2048", "ed25519"]},
            },
        })
        yield {"project": project, "named": named, "hosts": hosts, "work": work}


def _patterns(table) -> list[str]:
    return [line.split()[0] for line in table.read_text().splitlines() if line and not line.startswith("#")]


def test_up_over_ssh_lets_every_host_sign_for_each_of_its_domains(lab):
    result = lab["project"].run("up")
    assert result.ok
    signed = {}
    for host in ("svr1", "svr2"):
        tables = lab["work"] / "hosts" / host / "etc/opendkim"
        for suffix, algorithm in (("", "rsa-sha256"), (".ed25519", "ed25519-sha256")):
            table = tables / f"SigningTable{suffix}"
            with OpenDkimSigner(lab["work"] / "dkim", tables / f"KeyTable{suffix}", table, algorithm) as signer:
                for pattern in _patterns(table):
                    message = signer.sign(pattern.replace("*", "user"), "rcpt@example.net", "ssh", "Hi.\n")
                    results = verify(message, lab["named"])
                    assert results and all(ok for ok, _s, _d in results), (host, pattern, results)
                    signed[(host, pattern, algorithm)] = results[0][1]
    # shared: one selector on both hosts; per-signer: each host its own, per algorithm.
    assert signed[("svr1", "*@shared.test", "rsa-sha256")] == signed[("svr2", "*@shared.test", "rsa-sha256")]
    assert signed[("svr1", "*@customer.test", "rsa-sha256")] == signed[("svr1", "*@shared.test", "rsa-sha256")]
    assert signed[("svr1", "*@split.test", "rsa-sha256")] == "svr1-rsa"
    assert signed[("svr2", "*@split.test", "rsa-sha256")] == "svr2-rsa"
    assert signed[("svr2", "*@split.test", "ed25519-sha256")] == "svr2-ed25519"


def test_key_files_on_the_hosts_are_0600(lab):
    keys = list((lab["work"] / "hosts").rglob("*.private"))
    assert len(keys) == 2 * (1 + 2)
    assert all(path.stat().st_mode & 0o777 == 0o600 for path in keys)


def test_second_up_changes_no_remote_file(lab):
    files = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (lab["work"] / "hosts").rglob("*") if p.is_file()}
    again = lab["project"].run("up")
    assert set(again.changes) == {"same"}, again.changes
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files} == files


def test_a_host_whose_key_is_not_known_is_refused_and_untouched(lab):
    project, svr2 = lab["project"], lab["hosts"]["svr2"]
    before = {p: p.read_bytes() for p in (lab["work"] / "hosts" / "svr2").rglob("*") if p.is_file()}
    saved = svr2.known_hosts.read_text()
    svr2.known_hosts.write_text("")  # svr2 is now an unknown host
    try:
        config = project.stack_file.read_text()
        project.write_config({**_config(project), "dkimroll:domains": {
            **_config(project)["dkimroll:domains"],
            "shared.test": {**_config(project)["dkimroll:domains"]["shared.test"], "sign_for": ["*@shared.test"]},
        }})
        result = project.run("up", expect_ok=False)
        assert svr2.fingerprint in result.output
        assert {p: p.read_bytes() for p in before} == before
    finally:
        svr2.known_hosts.write_text(saved)
        project.stack_file.write_text(config)


def _config(project: StackProject) -> dict:
    import yaml

    return yaml.safe_load(project.stack_file.read_text())["config"]
