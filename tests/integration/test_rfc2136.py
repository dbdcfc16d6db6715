"""Rfc2136Target against a real BIND `named` with TSIG: error paths and message counting.

The shared contract (tests/contract) covers create/update/delete and foreign
values; here: wrong keys, refusals, unreachable servers, zones not served, and
exactly one UPDATE message per apply (counted at the client and confirmed by
the served SOA serial, which BIND bumps once per committed UPDATE).
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import dns.opcode
import dns.query
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import pytest

from keys import chunking
from providers.dns.base import TxtRecord
from providers.dns.rfc2136 import Rfc2136Target
from providers.errors import ConfigError, DnsTargetError
from tests.contract.dns_contract import dkim_value
from tests.contract.test_rfc2136_contract import zone_file_text
from tests.infra.named import NamedServer, TsigKey

pytestmark = pytest.mark.skipif(
    not (shutil.which("named") or Path("/usr/sbin/named").exists()), reason="BIND named not installed"
)

ZONE = "example.test"
_REAL_TCP = dns.query.tcp


@pytest.fixture
def tsig() -> TsigKey:
    return TsigKey.generate("dkimroll-it")


@pytest.fixture
def named(tmp_path: Path, tsig: TsigKey):
    path = tmp_path / f"{ZONE}.zone"
    path.write_text(zone_file_text(ZONE) + 'spf IN TXT "v=spf1 mx -all"\n')
    with NamedServer(tmp_path.resolve(), {ZONE: path}, allow_update_key=tsig) as server:
        yield server


@pytest.fixture
def updates(monkeypatch) -> list:
    """UPDATE messages sent by the code under test (the test's own traffic uses _REAL_TCP)."""
    sent: list = []

    def counting(message, *args, **kwargs):
        if message.opcode() == dns.opcode.UPDATE:
            sent.append(message)
        return _REAL_TCP(message, *args, **kwargs)

    monkeypatch.setattr(dns.query, "tcp", counting)
    return sent


def target(named: NamedServer, tsig: TsigKey | None, **kwargs) -> Rfc2136Target:
    if tsig is not None:
        kwargs.setdefault("tsig_name", tsig.name)
        kwargs.setdefault("tsig_secret", tsig.secret)
        kwargs.setdefault("tsig_algorithm", tsig.algorithm)
    return Rfc2136Target("ns1", server=named.address, port=named.port, timeout=5.0, **kwargs)


def values(named: NamedServer, name: str) -> list[str]:
    return sorted(chunking.join(s) for s in named.query_txt(name))


def snapshot(named: NamedServer) -> tuple:
    names = [f"{n}.{ZONE}" for n in ("s1._domainkey", "s2._domainkey", "spf")]
    return named.soa_serial(ZONE), tuple(tuple(values(named, n)) for n in names)


def rec(name: str, value: str, ttl: int = 300) -> TxtRecord:
    return TxtRecord(f"{name}.{ZONE}", value, ttl)


def test_one_update_message_per_apply(named: NamedServer, tsig: TsigKey, updates: list) -> None:
    t = target(named, tsig)
    first = [rec("s1._domainkey", dkim_value("rsa-2048", 1)), rec("s2._domainkey", dkim_value("ed25519", 1)),
             rec("spf", dkim_value("ed25519", 2))]
    serial = named.soa_serial(ZONE)
    assert t.apply(ZONE, first, []) is True
    assert len(updates) == 1
    assert named.soa_serial(ZONE) == serial + 1
    assert values(named, f"spf.{ZONE}") == sorted(["v=spf1 mx -all", first[2].value])

    rotated = rec("s3._domainkey", dkim_value("rsa-2048", 3))
    assert t.apply(ZONE, [rotated], first) is True
    assert len(updates) == 2
    assert named.soa_serial(ZONE) == serial + 2
    assert values(named, f"spf.{ZONE}") == ["v=spf1 mx -all"]
    assert values(named, first[0].name) == [] and values(named, rotated.name) == [rotated.value]
    [message] = updates[1:]
    assert len(message.update) == 4  # three deletes of exact rdatas, one add; nothing else named

    assert t.apply(ZONE, [rotated], first) is False  # all done already: nothing sent
    assert len(updates) == 2
    assert named.soa_serial(ZONE) == serial + 2


def test_wrong_tsig_secret_is_a_clear_error_and_changes_nothing(
    named: NamedServer, tsig: TsigKey, updates: list
) -> None:
    wrong = TsigKey.generate(tsig.name).secret
    t = target(named, tsig, tsig_secret=wrong)
    before = snapshot(named)
    with pytest.raises(DnsTargetError) as info:
        t.apply(ZONE, [rec("s1._domainkey", dkim_value("rsa-2048", 4))], [])
    message = str(info.value)
    assert "TSIG key rejected by server" in message
    assert "check tsig_name / tsig_secret / tsig_algorithm" in message
    assert f"{named.address}:{named.port}" in message and "'ns1'" in message and ZONE in message
    assert wrong not in message and tsig.secret not in message
    assert wrong not in repr(t)
    assert len(updates) == 1
    assert snapshot(named) == before


def test_wrong_algorithm_is_a_tsig_error(named: NamedServer, tsig: TsigKey) -> None:
    t = target(named, tsig, tsig_algorithm="hmac-sha512")
    with pytest.raises(DnsTargetError, match="TSIG key rejected by server"):
        t.apply(ZONE, [rec("s1._domainkey", dkim_value("ed25519", 5))], [])


def test_unknown_key_name_is_a_tsig_error(named: NamedServer, tsig: TsigKey) -> None:
    before = snapshot(named)
    t = target(named, tsig, tsig_name="nobody-knows-me")
    with pytest.raises(DnsTargetError, match=r"TSIG key rejected by server .*BADKEY"):
        t.apply(ZONE, [rec("s1._domainkey", dkim_value("ed25519", 6))], [])
    assert snapshot(named) == before


def test_unsigned_update_is_refused_with_the_rcode(named: NamedServer) -> None:
    before = snapshot(named)
    t = target(named, None)
    with pytest.raises(DnsTargetError) as info:
        t.apply(ZONE, [rec("s1._domainkey", dkim_value("ed25519", 7))], [])
    assert "REFUSED" in str(info.value) and f"{named.address}:{named.port}" in str(info.value)
    assert snapshot(named) == before


def test_zone_not_served(named: NamedServer, tsig: TsigKey) -> None:
    t = target(named, tsig)
    record = TxtRecord("s._domainkey.other.test", dkim_value("ed25519", 8), 300)
    problems = t.check("other.test", [record])
    assert problems == [f"zone other.test not served by {named.address}:{named.port} (SOA query: REFUSED)"]
    with pytest.raises(DnsTargetError, match=r"zone other.test not served by .*REFUSED"):
        t.apply("other.test", [record], [])


def test_update_refused_for_a_static_zone(tmp_path: Path, tsig: TsigKey) -> None:
    dynamic = tmp_path / f"{ZONE}.zone"
    dynamic.write_text(zone_file_text(ZONE))
    static = tmp_path / "static.test.zone"
    static.write_text(zone_file_text("static.test"))
    zones = {ZONE: dynamic, "static.test": static}
    with NamedServer(tmp_path.resolve(), zones, allow_update_key=tsig, dynamic_zones=[ZONE]) as server:
        t = target(server, tsig)
        record = TxtRecord("s._domainkey.static.test", dkim_value("ed25519", 8), 300)
        assert t.check("static.test", [record]) == []  # served, authoritative: only the write tells
        with pytest.raises(DnsTargetError) as info:
            t.apply("static.test", [record], [])
        message = str(info.value)
        assert "rejected the update: REFUSED" in message and "update-policy" in message
        assert f"{server.address}:{server.port}" in message and "static.test" in message
        assert server.query_txt(record.name) == []


def test_check_passes_for_a_served_zone(named: NamedServer, tsig: TsigKey) -> None:
    assert target(named, tsig).check(ZONE, [rec("s1._domainkey", dkim_value("rsa-4096", 1))]) == []


def test_missing_secret_is_found_before_any_traffic(named: NamedServer, tsig: TsigKey, updates: list) -> None:
    t = target(named, tsig, tsig_secret=None)
    problems = t.check(ZONE, [rec("s1._domainkey", "v=DKIM1; p=")])
    assert len(problems) == 1 and "tsig_secret is not set" in problems[0]
    with pytest.raises(DnsTargetError, match="tsig_secret is not set"):
        t.apply(ZONE, [rec("s1._domainkey", "v=DKIM1; p=")], [])
    assert updates == []
    bad = target(named, tsig, tsig_secret="not base64!")
    assert any("not valid base64" in p for p in bad.check(ZONE, []))


def test_unreachable_server(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        t = Rfc2136Target("ns1", server="127.0.0.1", port=port, timeout=2.0)
        problems = t.check(ZONE, [])
        assert len(problems) == 1 and f"cannot reach server 127.0.0.1:{port}" in problems[0]
        with pytest.raises(DnsTargetError, match="cannot reach server"):
            t.present(ZONE, [rec("s._domainkey", "v=DKIM1; p=")])


def test_deletes_exactly_the_rdata_the_server_holds(named: NamedServer, tsig: TsigKey) -> None:
    value = dkim_value("rsa-2048", 9)
    octets = value.encode()
    hand = dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, (octets[:50], octets[50:250], octets[250:]))
    update = named.make_update(ZONE)
    update.add(f"spf.{ZONE}.", 300, hand)
    assert _REAL_TCP(update, named.address, port=named.port, timeout=5).rcode() == 0
    t = target(named, tsig)
    record = rec("spf", value)
    assert t.present(ZONE, [record]) == [record]
    assert t.apply(ZONE, [], [record]) is True
    assert values(named, f"spf.{ZONE}") == ["v=spf1 mx -all"]


def test_constructor_rejects_bad_settings() -> None:
    with pytest.raises(ConfigError, match=r"dkimroll:dns.ns1.tsig_algorithm"):
        Rfc2136Target("ns1", server="192.0.2.1", tsig_algorithm="hmac-sha3")
    with pytest.raises(ConfigError, match=r"dkimroll:dns.ns1.port"):
        Rfc2136Target("ns1", server="192.0.2.1", port=70000)
    with pytest.raises(ConfigError, match=r"dkimroll:dns.ns1.server"):
        Rfc2136Target("ns1", server="")
    t = Rfc2136Target("ns1", server="192.0.2.1", tsig_name="k", tsig_secret="c2VjcmV0")
    assert "c2VjcmV0" not in repr(t)
