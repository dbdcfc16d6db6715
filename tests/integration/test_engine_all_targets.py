"""One stack publishing to all four DNS targets at once, on the real engine.

bind-file (a zone file), rfc2136 (a real named with TSIG), route53 (moto over
HTTP, behind a counting proxy) and godaddy (the project's GoDaddy API server).
Credentials are stack secrets and must never appear in output or state.
"""

from __future__ import annotations

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest

from tests.infra.godaddy_server import GoDaddyServer
from tests.infra.moto_server import FaultProxy, MotoServer, dummy_aws_env
from tests.infra.named import NamedServer, TsigKey
from tests.infra.project import StackProject

pytestmark = pytest.mark.engine

SPF = "v=spf1 -all"
GD_KEY, GD_SECRET = "gd-test-key-4f1c", "gd-test-secret-9a7e"


def _zone_file(path, zone: str) -> None:
    path.write_text(
        f"$TTL 3600\n@ IN SOA ns1.{zone}. hostmaster.{zone}. ( 1 3600 900 1209600 300 )\n"
        f"@ IN NS ns1.{zone}.\nns1 IN A 127.0.0.1\n"
    )


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    work = tmp_path_factory.mktemp("servers")
    zone = work / "rfc.test.zone"
    _zone_file(zone, "rfc.test")
    tsig = TsigKey.generate("dkimroll-update")
    env = dummy_aws_env(work)
    mp = pytest.MonkeyPatch()
    for key, value in env.items():
        mp.setenv(key, value)
    with NamedServer(work, {"rfc.test": zone}, allow_update_key=tsig) as named, \
            MotoServer(work) as moto, FaultProxy(moto.port, []) as proxy, \
            GoDaddyServer(domains=["gd.test"], api_key=GD_KEY, api_secret=GD_SECRET) as godaddy:
        zone_id = moto.create_zone("r53.test")
        godaddy.seed("gd.test", "gd1._domainkey", SPF, ttl=600)
        yield {"named": named, "tsig": tsig, "moto": moto, "proxy": proxy, "zone_id": zone_id,
               "godaddy": godaddy}
    mp.undo()


@pytest.fixture(scope="module")
def project(servers, tmp_path_factory) -> StackProject:
    proj = StackProject(tmp_path_factory.mktemp("all-targets"))
    named, tsig = servers["named"], servers["tsig"]
    proj.write_config({
        "dkimroll:dns": {
            "files": {"type": "bind-file", "zone_dir": "zones", "create": True},
            "ns1": {"type": "rfc2136", "server": named.address, "port": named.port,
                    "tsig_name": tsig.name, "tsig_algorithm": tsig.algorithm,
                    "nameservers": [f"{named.address}:{named.port}"]},
            # moto and the GoDaddy test server answer no DNS queries: read back through the API.
            "aws": {"type": "route53", "endpoint_url": servers["proxy"].url, "verify": "backend"},
            "gd": {"type": "godaddy", "base_url": servers["godaddy"].base_url, "pace_seconds": 0,
                   "verify": "backend"},
        },
        "dkimroll:signers": {"mta1": {"transport": "local", "root": "signers/mta1"}},
        "dkimroll:domains": {
            "file.test": {"dns": "files", "signers": ["mta1"], "algorithm": "rsa-2048"},
            "rfc.test": {"dns": "ns1", "signers": ["mta1"], "algorithm": ["rsa-2048", "ed25519"]},
            "r53.test": {"dns": "aws", "signers": ["mta1"], "algorithm": "rsa-4096"},
            "gd.test": {"dns": "gd", "signers": ["mta1"], "algorithm": "rsa-2048", "ttl": 600,
                        "selector": "gd1"},
        },
    })
    proj.set_secret("dkimroll:dns.ns1.tsig_secret", tsig.secret)
    proj.set_secret("dkimroll:dns.gd.api_key", GD_KEY)
    proj.set_secret("dkimroll:dns.gd.api_secret", GD_SECRET)
    return proj


def _route53_values(servers, name: str) -> list[str]:
    client = servers["moto"].client()
    sets = client.list_resource_record_sets(HostedZoneId=servers["zone_id"])["ResourceRecordSets"]
    values = []
    for rrset in sets:
        if rrset["Type"] == "TXT" and rrset["Name"].rstrip(".") == name:
            for item in rrset["ResourceRecords"]:
                rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, item["Value"])
                values.append(b"".join(rdata.strings).decode())
    return values


def _expected(outputs: dict, zone: str) -> list[dict]:
    return [r for r in outputs["records"] if r["zone"] == zone]


@pytest.fixture(scope="module")
def published(project) -> dict:
    return project.run("up").outputs


def test_up_publishes_to_every_target(project, servers, published):
    outputs = published
    assert {r["zone"] for r in outputs["records"]} == {"file.test", "rfc.test", "r53.test", "gd.test"}
    for record in _expected(outputs, "rfc.test"):
        assert [b"".join(s).decode() for s in servers["named"].query_txt(record["name"])] == [record["value"]]
    for record in _expected(outputs, "r53.test"):
        assert _route53_values(servers, record["name"]) == [record["value"]]
    gd = _expected(outputs, "gd.test")[0]
    assert sorted(servers["godaddy"].txt("gd.test", "gd1._domainkey")) == sorted([SPF, gd["value"]])
    assert "file.test" in {p.name.removesuffix(".zone") for p in (project.root / "zones").glob("*.zone")}
    assert servers["proxy"].count("ChangeResourceRecordSets") == 1


def test_second_up_asks_no_backend_anything(project, servers, published):
    r53_requests = sum(servers["proxy"].counts().values())
    gd_requests = len(servers["godaddy"].log)
    serial = servers["named"].soa_serial("rfc.test")
    again = project.run("up")
    assert set(again.changes) == {"same"}, again.changes
    assert sum(servers["proxy"].counts().values()) == r53_requests
    assert len(servers["godaddy"].log) == gd_requests
    assert servers["named"].soa_serial("rfc.test") == serial


def test_credentials_never_appear_in_output_or_state(project, servers, published):
    result = project.run("preview")
    texts = [result.output] + [p.read_text(errors="replace") for p in project.raw_state_files()]
    texts.append(project.stack_file.read_text())
    for text in texts:
        for secret in (GD_SECRET, GD_KEY, servers["tsig"].secret):
            assert secret not in text


def test_destroy_removes_only_dkimroll_records(project, servers, published):
    project.run("destroy")
    assert servers["godaddy"].txt("gd.test", "gd1._domainkey") == [SPF]
    for record in _expected(published, "r53.test"):
        assert _route53_values(servers, record["name"]) == []
    for record in _expected(published, "rfc.test"):
        assert servers["named"].query_txt(record["name"]) == []
    zone = (project.root / "zones" / "file.test.zone").read_text()
    assert "_domainkey" not in zone
