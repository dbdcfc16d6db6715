"""The DNS target contract against Rfc2136Target and a real BIND `named` (TSIG, dynamic zone).

Foreign values are seeded and deleted with signed UPDATE messages of the
test's own, values are read back with direct queries to named, and writes
are counted as UPDATE messages the backend sends (the backend's own
dns.query.tcp calls whose opcode is UPDATE).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dns.opcode
import dns.query
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import pytest

from keys import chunking
from providers.dns.rfc2136 import Rfc2136Target
from tests.contract.dns_contract import DnsTargetContract
from tests.infra.named import NamedServer, TsigKey

pytestmark = pytest.mark.skipif(
    not (shutil.which("named") or Path("/usr/sbin/named").exists()), reason="BIND named not installed"
)

_REAL_TCP = dns.query.tcp  # the test's own traffic goes around the write counter


def zone_file_text(zone: str) -> str:
    return (
        f"$ORIGIN {zone}.\n"
        "$TTL 300\n"
        f"@ IN SOA ns.{zone}. hostmaster.{zone}. ( 1 3600 600 86400 300 )\n"
        f"@ IN NS ns.{zone}.\n"
        "ns IN A 127.0.0.1\n"
    )


def _txt(value) -> dns.rdtypes.ANY.TXT.TXT:
    strings = chunking.chunk(value) if isinstance(value, str) else tuple(value)
    return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, strings)


class TestRfc2136Contract(DnsTargetContract):
    @pytest.fixture
    def tsig(self) -> TsigKey:
        return TsigKey.generate("dkimroll-contract")

    @pytest.fixture
    def named(self, tmp_path: Path, zone: str, tsig: TsigKey):
        path = tmp_path / f"{zone}.zone"
        path.write_text(zone_file_text(zone))
        with NamedServer(tmp_path.resolve(), {zone: path}, allow_update_key=tsig) as server:
            yield server

    @pytest.fixture
    def write_counter(self, monkeypatch):
        updates = []

        def counting(message, *args, **kwargs):
            if message.opcode() == dns.opcode.UPDATE:
                updates.append(message)
            return _REAL_TCP(message, *args, **kwargs)

        monkeypatch.setattr(dns.query, "tcp", counting)
        return lambda: len(updates)

    @pytest.fixture
    def backend(self, named: NamedServer, tsig: TsigKey, write_counter):
        return Rfc2136Target(
            "contract-ns",
            server=named.address,
            port=named.port,
            tsig_name=tsig.name,
            tsig_secret=tsig.secret,
            tsig_algorithm=tsig.algorithm,
            timeout=5.0,
        )

    def _send(self, named: NamedServer, zone: str, build) -> None:
        update = named.make_update(zone)
        build(update)
        response = _REAL_TCP(update, named.address, timeout=5.0, port=named.port)
        assert response.rcode() == 0, f"seed update refused: {response.rcode()}"

    @pytest.fixture
    def server_values(self, named: NamedServer):
        return lambda name: [chunking.join(strings) for strings in named.query_txt(name)]

    @pytest.fixture
    def seed_foreign(self, named: NamedServer, zone: str):
        return lambda name, value: self._send(named, zone, lambda u: u.add(name + ".", 300, _txt(value)))

    @pytest.fixture
    def delete_by_hand(self, named: NamedServer, zone: str):
        def delete(name: str, value: str) -> None:
            held = [strings for strings in named.query_txt(name) if chunking.join(strings) == value]
            assert held, f"{value[:20]}... not at {name}"
            self._send(named, zone, lambda u: [u.delete(name + ".", _txt(s)) for s in held])

        return delete
