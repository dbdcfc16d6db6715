"""Route53Target against moto's Route53 over HTTP, with faults injected by a proxy.

Covers what the shared contract (tests/contract) does not: retries on
throttling, change-batch counting per zone, hosted-zone selection (exact
labels, public/private, ambiguity), exact DELETEs, INSYNC polling, limits the
emulator does not enforce, and the error paths.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from keys import render
from providers.dns.base import TxtRecord
from providers.dns.route53 import NO_CREDENTIALS, Route53Target, split_batches, validate_batch
from providers.errors import DnsTargetError
from tests.contract.dns_contract import dkim_value, filler_value
from tests.infra.moto_server import CREDENTIAL_VARIABLES, FaultProxy, MotoServer, dummy_aws_env

ZONE = "example.test"
NS = "{https://route53.amazonaws.com/doc/2013-04-01/}"


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    with MotoServer(tmp_path_factory.mktemp("moto-r53")) as server:
        yield server


@pytest.fixture(autouse=True)
def aws_env(monkeypatch, tmp_path: Path, moto: MotoServer) -> None:
    for key, value in dummy_aws_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    moto.reset()


@pytest.fixture
def proxy(moto: MotoServer):
    with FaultProxy(moto.port) as proxy:
        yield proxy


def target(proxy: FaultProxy, **kwargs) -> Route53Target:
    kwargs.setdefault("poll_interval", 0.02)
    kwargs.setdefault("wait_timeout", 10)
    t = Route53Target("aws", endpoint_url=proxy.url, **kwargs)
    t.backoff_base = 0.01  # keep retries quick; the policy itself is unit-tested
    return t


def rrset(moto: MotoServer, zone_id: str, name: str):
    fqdn = name.rstrip(".") + "."
    page = moto.client().list_resource_record_sets(
        HostedZoneId=zone_id, StartRecordName=fqdn, StartRecordType="TXT", MaxItems="1"
    )
    for found in page["ResourceRecordSets"]:
        if found["Name"] == fqdn and found["Type"] == "TXT":
            return found
    return None


def raw_values(moto: MotoServer, zone_id: str, name: str) -> list[str]:
    found = rrset(moto, zone_id, name)
    return [rr["Value"] for rr in found["ResourceRecords"]] if found else []


def put_by_hand(moto: MotoServer, zone_id: str, name: str, values: list[str], ttl: int = 300) -> None:
    moto.client().change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": {
            "Name": name + ".", "Type": "TXT", "TTL": ttl, "ResourceRecords": [{"Value": v} for v in values]}}]},
    )


def sent_changes(body: bytes) -> list[dict]:
    """The changes of one ChangeResourceRecordSets request body, as plain dicts."""
    root = ET.fromstring(body)
    out = []
    for change in root.iter(f"{NS}Change"):
        rrset_el = change.find(f"{NS}ResourceRecordSet")
        out.append({
            "Action": change.findtext(f"{NS}Action"),
            "Name": rrset_el.findtext(f"{NS}Name"),
            "TTL": rrset_el.findtext(f"{NS}TTL"),
            "Values": [v.text for v in rrset_el.iter(f"{NS}Value")],
        })
    return out


def rec(name: str, value: str, ttl: int = 300) -> TxtRecord:
    return TxtRecord(f"{name}.{ZONE}", value, ttl)


# --- the emulator's gap, and our rule -----------------------------------------------------


def test_moto_accepts_a_300_character_string_that_route53_rejects(moto: MotoServer, proxy: FaultProxy) -> None:
    zone_id = moto.create_zone(ZONE)
    too_long = '"' + "a" * 300 + '"'
    # moto takes it (real Route53 answers InvalidChangeBatch: CharacterStringTooLong) ...
    put_by_hand(moto, zone_id, f"long.{ZONE}", [too_long])
    assert raw_values(moto, zone_id, f"long.{ZONE}") == [too_long]
    # ... so dkimroll checks it itself,
    change = {"Action": "UPSERT", "ResourceRecordSet": {
        "Name": f"long.{ZONE}.", "Type": "TXT", "TTL": 300, "ResourceRecords": [{"Value": too_long}]}}
    assert any("CharacterStringTooLong" in p for p in validate_batch([change]))
    # ... and never sends one: a 300-character value goes out as two strings in one value.
    value = "v=DKIM1; k=rsa; p=" + "Q" * 282
    assert target(proxy).apply(ZONE, [rec("ours._domainkey", value)], []) is True
    [sent] = raw_values(moto, zone_id, f"ours._domainkey.{ZONE}")
    assert sent == render.presentation(value) and sent.count('"') == 4


# --- retries ---------------------------------------------------------------------------------


def test_throttling_and_prior_request_not_complete_are_retried(moto: MotoServer) -> None:
    zone_id = moto.create_zone(ZONE)
    faults = [(400, "Throttling"), (400, "PriorRequestNotComplete"), (503, "ServiceUnavailable")]
    with FaultProxy(moto.port, faults) as proxy:
        record = rec("s1._domainkey", dkim_value("rsa-2048", 1))
        assert target(proxy).apply(ZONE, [record], []) is True
        assert proxy.count("ChangeResourceRecordSets") == 4  # three refused, then one accepted
        assert proxy.forwarded["ChangeResourceRecordSets"] == 1
        assert [s for a, s in proxy.log if a == "ChangeResourceRecordSets"] == [400, 400, 503, 200]
    assert raw_values(moto, zone_id, record.name) == [render.presentation(record.value)]


def test_throttling_on_reads_is_retried_too(moto: MotoServer) -> None:
    moto.create_zone(ZONE)
    with FaultProxy(moto.port, [(400, "Throttling")] * 2, fault_action="ListHostedZones") as proxy:
        record = rec("s1._domainkey", dkim_value("ed25519", 1))
        assert target(proxy).present(ZONE, [record]) == []
        assert proxy.count("ListHostedZones") == 3


def test_retries_give_up_after_max_attempts_with_the_servers_message(moto: MotoServer) -> None:
    zone_id = moto.create_zone(ZONE)
    with FaultProxy(moto.port, [(400, "Throttling")] * 5) as proxy:
        record = rec("s1._domainkey", dkim_value("ed25519", 2))
        with pytest.raises(DnsTargetError) as info:
            target(proxy, max_attempts=3).apply(ZONE, [record], [])
        message = str(info.value)
        assert "Throttling" in message and "Rate exceeded" in message and "3 attempts" in message
        assert "testing" not in message  # no credentials in errors
        assert proxy.count("ChangeResourceRecordSets") == 3
        assert proxy.forwarded["ChangeResourceRecordSets"] == 0
    assert raw_values(moto, zone_id, record.name) == []


def test_invalid_change_batch_is_not_retried(moto: MotoServer) -> None:
    moto.create_zone(ZONE)
    with FaultProxy(moto.port, [(400, "InvalidChangeBatch")]) as proxy:
        with pytest.raises(DnsTargetError, match="InvalidChangeBatch: Invalid change batch"):
            target(proxy).apply(ZONE, [rec("s._domainkey", dkim_value("ed25519", 3))], [])
        assert proxy.count("ChangeResourceRecordSets") == 1


# --- INSYNC -----------------------------------------------------------------------------------


def test_waits_for_insync(moto: MotoServer) -> None:
    moto.create_zone(ZONE)
    with FaultProxy(moto.port, pending=3) as proxy:
        assert target(proxy).apply(ZONE, [rec("s._domainkey", dkim_value("ed25519", 4))], []) is True
        assert proxy.count("GetChange") == 4  # three PENDING answers, then moto's INSYNC


def test_gives_up_waiting_for_insync_after_the_timeout(moto: MotoServer) -> None:
    moto.create_zone(ZONE)
    with FaultProxy(moto.port, pending=10**6) as proxy:
        t = target(proxy, wait_timeout=0.3, poll_interval=0.05)
        with pytest.raises(DnsTargetError, match=r"still PENDING after 0.3s"):
            t.apply(ZONE, [rec("s._domainkey", dkim_value("ed25519", 5))], [])
        assert 2 <= proxy.count("GetChange") <= 20


# --- one change batch per zone per apply -------------------------------------------------------


def test_exactly_one_change_batch_per_zone_per_apply(moto: MotoServer, proxy: FaultProxy) -> None:
    zone_a = moto.create_zone(ZONE)
    moto.create_zone("other.test")  # a second zone, never written
    t = target(proxy)
    put_by_hand(moto, zone_a, f"s0._domainkey.{ZONE}", [render.presentation("v=spf1 -all")])
    records_a = [rec(f"s{i}._domainkey", dkim_value("rsa-2048", 10 + i)) for i in range(4)]
    records_b = [TxtRecord(f"s{i}._domainkey.other.test", dkim_value("ed25519", 10 + i), 300) for i in range(3)]

    assert t.apply(ZONE, records_a, []) is True
    assert proxy.count("ChangeResourceRecordSets") == 1
    assert t.apply("other.test", records_b, []) is True
    assert proxy.count("ChangeResourceRecordSets") == 2

    first, second = (sent_changes(body) for body in proxy.change_bodies)
    assert sorted(c["Name"] for c in first) == [f"s{i}._domainkey.{ZONE}." for i in range(4)]
    assert {c["Action"] for c in first} == {"UPSERT"}
    [s0] = [c for c in first if c["Name"] == f"s0._domainkey.{ZONE}."]
    assert s0["Values"] == [render.presentation("v=spf1 -all"), render.presentation(records_a[0].value)]
    assert len(second) == 3

    # a rotation touching several names is still one batch
    assert t.apply(ZONE, [rec("s9._domainkey", dkim_value("rsa-2048", 19))], records_a[:3]) is True
    assert proxy.count("ChangeResourceRecordSets") == 3
    actions = sorted((c["Name"], c["Action"]) for c in sent_changes(proxy.change_bodies[-1]))
    assert actions == [
        (f"s0._domainkey.{ZONE}.", "UPSERT"),
        (f"s1._domainkey.{ZONE}.", "DELETE"),
        (f"s2._domainkey.{ZONE}.", "DELETE"),
        (f"s9._domainkey.{ZONE}.", "UPSERT"),
    ]
    assert raw_values(moto, zone_a, f"s0._domainkey.{ZONE}") == [render.presentation("v=spf1 -all")]


def test_batches_split_only_when_the_limits_require_it(moto: MotoServer, proxy: FaultProxy) -> None:
    zone_id = moto.create_zone(ZONE)
    # 60 names holding a foreign value each; every change is an UPSERT (counted twice)
    for i in range(60):
        put_by_hand(moto, zone_id, f"k{i}._domainkey.{ZONE}", ['"v=spf1 -all"'])
    records = [rec(f"k{i}._domainkey", filler_value(790, seed=i)) for i in range(60)]
    t = target(proxy)
    assert t.apply(ZONE, records, []) is True
    bodies = proxy.change_bodies
    assert len(bodies) > 1  # 60 x ~810 characters x 2 > 32000
    sizes = []
    for body in bodies:
        changes = sent_changes(body)
        assert all(c["Action"] == "UPSERT" for c in changes)
        chars = 2 * sum(len(v) for c in changes for v in c["Values"])
        assert chars <= 32000
        sizes.append(len(changes))
    assert sum(sizes) == 60
    expected = split_batches([{"Action": "UPSERT", "ResourceRecordSet": {"ResourceRecords": [
        {"Value": '"v=spf1 -all"'}, {"Value": render.presentation(r.value)}]}} for r in records])
    assert sizes == [len(b) for b in expected]
    assert {r for r in t.present(ZONE, records)} == set(records)


# --- hosted zone selection ---------------------------------------------------------------------


def test_ambiguous_zones_name_both_ids(moto: MotoServer, proxy: FaultProxy) -> None:
    one = moto.create_zone(ZONE)
    two = moto.create_zone(ZONE)
    t = target(proxy)
    record = rec("s._domainkey", dkim_value("ed25519", 6))
    problems = t.check(ZONE, [record])
    assert len(problems) == 1 and one in problems[0] and two in problems[0] and "ambiguous" in problems[0]
    with pytest.raises(DnsTargetError) as info:
        t.apply(ZONE, [record], [])
    assert one in str(info.value) and two in str(info.value)
    assert proxy.count("ChangeResourceRecordSets") == 0
    # hosted_zone_id settles it
    pinned = target(proxy, hosted_zone_id=two)
    assert pinned.check(ZONE, [record]) == []
    assert pinned.apply(ZONE, [record], []) is True
    assert raw_values(moto, two, record.name) and not raw_values(moto, one, record.name)


def test_private_and_public_zones_are_told_apart(moto: MotoServer, proxy: FaultProxy) -> None:
    public = moto.create_zone(ZONE)
    private = moto.create_zone(ZONE, private=True)
    record = rec("s._domainkey", dkim_value("ed25519", 7))
    assert target(proxy, private_zone=True).apply(ZONE, [record], []) is True
    assert raw_values(moto, private, record.name) == [render.presentation(record.value)]
    assert raw_values(moto, public, record.name) == []
    assert target(proxy).present(ZONE, [record]) == []
    assert target(proxy, private_zone=True).present(ZONE, [record]) == [record]


def test_missing_zone_says_public_or_private(moto: MotoServer, proxy: FaultProxy) -> None:
    moto.create_zone(ZONE)
    record = rec("s._domainkey", dkim_value("ed25519", 8))
    assert target(proxy).check(ZONE, [record]) == []
    problems = target(proxy, private_zone=True).check(ZONE, [record])
    assert problems == [f"hosted zone for {ZONE} not found (private)"]


def test_zone_lookup_compares_labels_and_takes_the_longest_match(moto: MotoServer, proxy: FaultProxy) -> None:
    parent = moto.create_zone(ZONE)
    child = moto.create_zone(f"sub.{ZONE}")
    moto.create_zone(f"b.sub.{ZONE}")  # below the zone we ask for: never a candidate
    t = target(proxy)
    # "myexample.test" ends with "example.test" as a string, not as labels
    problems = t.check("myexample.test", [TxtRecord("s._domainkey.myexample.test", "v=DKIM1; p=", 300)])
    assert problems == ["hosted zone for myexample.test not found (public)"]
    # a zone without a hosted zone of its own lives in its parent's
    deep = TxtRecord(f"s._domainkey.a.{ZONE}", dkim_value("ed25519", 9), 300)
    assert t.apply(f"a.{ZONE}", [deep], []) is True
    assert raw_values(moto, parent, deep.name)
    # the longest suffix wins
    inner = TxtRecord(f"s._domainkey.sub.{ZONE}", dkim_value("ed25519", 10), 300)
    assert t.apply(f"sub.{ZONE}", [inner], []) is True
    assert raw_values(moto, child, inner.name) and not raw_values(moto, parent, inner.name)


def test_zone_lookup_pages_through_many_zones(moto: MotoServer, proxy: FaultProxy) -> None:
    for i in range(101):
        moto.create_zone(f"filler{i}.test")
    wanted = moto.create_zone(ZONE)
    record = rec("s._domainkey", dkim_value("ed25519", 11))
    assert target(proxy).apply(ZONE, [record], []) is True
    assert raw_values(moto, wanted, record.name)
    assert proxy.count("ListHostedZones") >= 2


def test_hosted_zone_id_must_contain_the_zone(moto: MotoServer, proxy: FaultProxy) -> None:
    other = moto.create_zone("other.test")
    problems = target(proxy, hosted_zone_id=other).check(ZONE, [rec("s._domainkey", "v=DKIM1; p=")])
    assert problems == [f"hosted zone {other} is other.test, which does not contain {ZONE}"]


# --- exact values ----------------------------------------------------------------------------------


def test_delete_carries_the_exact_current_rrset(moto: MotoServer, proxy: FaultProxy) -> None:
    zone_id = moto.create_zone(ZONE)
    value = dkim_value("rsa-2048", 12)
    hand_made = " ".join(f'"{value[i:i + 100]}"' for i in range(0, len(value), 100))  # other chunking
    put_by_hand(moto, zone_id, f"old._domainkey.{ZONE}", [hand_made], ttl=123)
    t = target(proxy)
    record = rec("old._domainkey", value, 3600)  # our TTL differs: the DELETE must still say 123
    assert t.present(ZONE, [record]) == [record]
    assert t.apply(ZONE, [], [record]) is True
    [change] = sent_changes(proxy.change_bodies[-1])
    assert change == {"Action": "DELETE", "Name": f"old._domainkey.{ZONE}.", "TTL": "123", "Values": [hand_made]}
    assert rrset(moto, zone_id, record.name) is None


def test_foreign_values_are_kept_byte_for_byte_with_their_ttl(moto: MotoServer, proxy: FaultProxy) -> None:
    zone_id = moto.create_zone(ZONE)
    name = f"mixed._domainkey.{ZONE}"
    spf = '"v=spf1 " "mx -all"'  # someone else's chunking and spacing
    put_by_hand(moto, zone_id, name, [spf], ttl=900)
    t = target(proxy)
    record = TxtRecord(name, dkim_value("rsa-2048", 13), 3600)
    assert t.apply(ZONE, [record], []) is True
    assert raw_values(moto, zone_id, name) == [spf, render.presentation(record.value)]
    assert rrset(moto, zone_id, name)["TTL"] == 900
    assert t.apply(ZONE, [], [record]) is True
    assert raw_values(moto, zone_id, name) == [spf]
    assert rrset(moto, zone_id, name)["TTL"] == 900


def test_nothing_to_do_makes_no_change_call(moto: MotoServer, proxy: FaultProxy) -> None:
    moto.create_zone(ZONE)
    t = target(proxy)
    record = rec("s._domainkey", dkim_value("ed25519", 14))
    assert t.apply(ZONE, [record], []) is True
    before = proxy.counts()
    assert t.apply(ZONE, [record], []) is False
    after = proxy.counts()
    assert after.get("ChangeResourceRecordSets") == before.get("ChangeResourceRecordSets") == 1
    assert after.get("GetChange") == before.get("GetChange")


# --- errors ------------------------------------------------------------------------------------------


def test_no_credentials_is_reported_plainly(moto: MotoServer, proxy: FaultProxy, monkeypatch) -> None:
    moto.create_zone(ZONE)
    for variable in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    t = target(proxy)
    record = rec("s._domainkey", dkim_value("ed25519", 15))
    assert t.check(ZONE, [record]) == [NO_CREDENTIALS]
    with pytest.raises(DnsTargetError, match="no AWS credentials found"):
        t.apply(ZONE, [record], [])
    assert proxy.counts() == {}


def test_unknown_profile_is_reported(proxy: FaultProxy) -> None:
    problems = target(proxy, profile="nosuchprofile").check(ZONE, [])
    assert problems == ["AWS profile 'nosuchprofile' not found"]


def test_check_reports_route53_limits_per_value(moto: MotoServer, proxy: FaultProxy) -> None:
    moto.create_zone(ZONE)
    huge = TxtRecord(f"huge._domainkey.{ZONE}", "p=" + "Z" * 4100, 300)
    problems = target(proxy).check(ZONE, [huge])
    assert len(problems) == 1 and "4000" in problems[0]
    with pytest.raises(DnsTargetError, match="4000"):
        target(proxy).apply(ZONE, [huge], [])
    assert proxy.count("ChangeResourceRecordSets") == 0
