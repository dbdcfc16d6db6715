"""The DNS target contract against BindFileTarget: a zone file in a temporary directory.

The "server" is the file itself: foreign values are written into the
operator's part of the file, and values are read back by parsing the file with
dnspython, independently of the backend. Writes are counted at the atomic
rename (providers.dns.bindfile.atomic_write).
"""

from __future__ import annotations

from pathlib import Path

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.zone
import pytest

import providers.dns.bindfile as bindfile
from keys import chunking, render
from providers.dns.bindfile import BindFileTarget
from tests.contract.dns_contract import DnsTargetContract

FOREIGN_MARK = "; foreign records (not dkimroll's) below this line\n"


def _zone_text(zone: str) -> str:
    return (
        f"$ORIGIN {zone}.\n"
        "$TTL 3600\n"
        f"@ IN SOA ns1.{zone}. hostmaster.{zone}. ( 2024010100 3600 900 1209600 300 )\n"
        f"@ IN NS ns1.{zone}.\n"
        "ns1 IN A 192.0.2.53\n"
        + FOREIGN_MARK
    )


class TestBindFileContract(DnsTargetContract):
    # BindFileTarget owns only its managed block: a hand-made copy of a value
    # elsewhere in the file is left alone, and dkimroll still writes its own.
    adopts_identical_foreign_values = False

    @pytest.fixture
    def zone_path(self, tmp_path: Path, zone: str) -> Path:
        zone_dir = tmp_path / "zones"
        zone_dir.mkdir()
        path = zone_dir / f"{zone}.zone"
        path.write_text(_zone_text(zone))
        return path

    @pytest.fixture
    def write_counter(self, monkeypatch):
        calls = []
        real = bindfile.atomic_write

        def counting(*args, **kwargs):
            result = real(*args, **kwargs)
            calls.append(args[0])
            return result

        monkeypatch.setattr(bindfile, "atomic_write", counting)
        return lambda: len(calls)

    @pytest.fixture
    def backend(self, zone_path: Path, write_counter):
        return BindFileTarget("contract-bind", zone_path.parent)

    @pytest.fixture
    def server_values(self, zone_path: Path, zone: str):
        def values(name: str) -> list[str]:
            parsed = dns.zone.from_text(zone_path.read_text(), origin=zone, relativize=False)
            node = parsed.get_node(dns.name.from_text(name))
            if node is None:
                return []
            rdataset = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.TXT)
            return [chunking.join(rdata.strings) for rdata in rdataset] if rdataset else []

        return values

    @pytest.fixture
    def seed_foreign(self, zone_path: Path):
        def seed(name: str, value) -> None:
            if isinstance(value, str):
                line = render.zone_file(name, 3600, value)
            else:
                strings = " ".join(render.quote(piece) for piece in value)
                line = f"{dns.name.from_text(name).to_text()} 3600 IN TXT ( {strings} )"
            text = zone_path.read_text()
            assert FOREIGN_MARK in text
            zone_path.write_text(text.replace(FOREIGN_MARK, FOREIGN_MARK + line + "\n"))

        return seed

    @pytest.fixture
    def delete_by_hand(self, zone_path: Path, zone: str):
        def delete(name: str, value: str) -> None:
            text = zone_path.read_text()
            block = bindfile.find_block(text, zone)
            key = (dns.name.from_text(name).to_text(omit_final_dot=True).lower(), value)
            assert block is not None and key in block.records, "only values in dkimroll's block are deleted here"
            records = dict(block.records)
            del records[key]
            zone_path.write_text(bindfile.replace_block(text, block, bindfile.render_block(records)))

        return delete
