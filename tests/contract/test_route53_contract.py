"""The DNS target contract against Route53Target and moto's Route53 over HTTP.

The backend talks to moto through a FaultProxy (no faults here) that counts
ChangeResourceRecordSets requests: the write counter. The test's own reads
and writes go to moto directly with boto3, and values are parsed back with
dnspython, independently of the backend's parser.
"""

from __future__ import annotations

from pathlib import Path

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest

from keys import chunking, render
from providers.dns.route53 import Route53Target
from tests.contract.dns_contract import DnsTargetContract
from tests.infra.moto_server import FaultProxy, MotoServer, dummy_aws_env


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    with MotoServer(tmp_path_factory.mktemp("moto-contract")) as server:
        yield server


@pytest.fixture(autouse=True)
def aws_env(monkeypatch, tmp_path: Path) -> None:
    for key, value in dummy_aws_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def _rrset(client, zone_id: str, name: str):
    fqdn = name.rstrip(".") + "."
    page = client.list_resource_record_sets(
        HostedZoneId=zone_id, StartRecordName=fqdn, StartRecordType="TXT", MaxItems="1"
    )
    for rrset in page["ResourceRecordSets"]:
        if rrset["Name"].lower() == fqdn.lower() and rrset["Type"] == "TXT":
            return rrset
    return None


def _joined(value: str) -> str:
    rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, value)
    return chunking.join(rdata.strings)


class TestRoute53Contract(DnsTargetContract):
    @pytest.fixture
    def zone_id(self, moto: MotoServer, zone: str) -> str:
        moto.reset()
        return moto.create_zone(zone)

    @pytest.fixture
    def proxy(self, moto: MotoServer):
        with FaultProxy(moto.port) as proxy:
            yield proxy

    @pytest.fixture
    def backend(self, proxy: FaultProxy, zone_id: str):
        return Route53Target("contract-aws", endpoint_url=proxy.url, poll_interval=0.05, wait_timeout=10)

    @pytest.fixture
    def write_counter(self, proxy: FaultProxy):
        return lambda: proxy.count("ChangeResourceRecordSets")

    @pytest.fixture
    def server_values(self, moto: MotoServer, zone_id: str):
        client = moto.client()

        def values(name: str) -> list[str]:
            rrset = _rrset(client, zone_id, name)
            return [_joined(rr["Value"]) for rr in rrset["ResourceRecords"]] if rrset else []

        return values

    def _write(self, client, zone_id: str, name: str, values: list[str], old) -> None:
        if values:
            change = {
                "Action": "UPSERT",
                "ResourceRecordSet": {
                    "Name": name.rstrip(".") + ".",
                    "Type": "TXT",
                    "TTL": old["TTL"] if old else 300,
                    "ResourceRecords": [{"Value": v} for v in values],
                },
            }
        else:
            change = {"Action": "DELETE", "ResourceRecordSet": old}
        client.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [change]})

    @pytest.fixture
    def seed_foreign(self, moto: MotoServer, zone_id: str):
        client = moto.client()

        def seed(name: str, value) -> None:
            text = render.presentation(value) if isinstance(value, str) else " ".join(render.quote(s) for s in value)
            old = _rrset(client, zone_id, name)
            current = [rr["Value"] for rr in old["ResourceRecords"]] if old else []
            self._write(client, zone_id, name, current + [text], old)

        return seed

    @pytest.fixture
    def delete_by_hand(self, moto: MotoServer, zone_id: str):
        client = moto.client()

        def delete(name: str, value: str) -> None:
            old = _rrset(client, zone_id, name)
            assert old is not None
            keep = [rr["Value"] for rr in old["ResourceRecords"] if _joined(rr["Value"]) != value]
            assert len(keep) < len(old["ResourceRecords"])
            self._write(client, zone_id, name, keep, old)

        return delete
