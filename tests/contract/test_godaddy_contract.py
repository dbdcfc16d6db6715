"""The DNS target contract against GoDaddyTarget and the project's own GoDaddy v1 API server.

The "server" is tests.infra.godaddy_server on 127.0.0.1: foreign values are
seeded and read back through its direct state API, never through the backend.
Writes are the server's successful PUT and DELETE requests. The server runs
with GoDaddy's behaviour switched on: a request budget per window (on its own
clock, advanced by the target's injected sleep) and a transient 409 right
after every write, so every contract test also goes through the retries.

GoDaddy differs from the other targets in three ways the contract hard-codes,
so those tests are overridden here with the same intent inside GoDaddy's
limits, plus a check that the out-of-limit inputs are refused before any
request:

* TTL must be >= 600 (the contract uses 300 and 0 in places);
* `data` is at most 512 characters: an rsa-4096 (or rsa-3072) key does not fit;
* there is no multi-name transaction: one `apply` writes once per affected
  name (PUT or DELETE of that name's TXT set), not once per zone.
"""

from __future__ import annotations

import pytest

from keys import chunking
from providers.dns.base import TxtRecord, relative_name
from providers.dns.godaddy import GoDaddyTarget
from providers.errors import DnsTargetError
from tests.contract.dns_contract import SPF, DnsTargetContract, dkim_value, filler_value
from tests.infra.godaddy_server import GoDaddyServer

KEY = "contract-key-51d0"
SECRET = "contract-secret-9Hq2vX"
MIN_TTL = 600
MAX_DATA = 512


class TestGoDaddyContract(DnsTargetContract):
    # GoDaddy holds plain TXT values at a name: one already there (made by
    # someone else) is the same value, so nothing needs writing.
    adopts_identical_foreign_values = True

    # -- fixtures -----------------------------------------------------------------------

    @pytest.fixture
    def server(self, zone: str):
        with GoDaddyServer(
            domains=[zone], api_key=KEY, api_secret=SECRET, budget=20, window_seconds=60, conflicts_after_write=1
        ) as srv:
            yield srv

    @pytest.fixture
    def sleeps(self) -> list[float]:
        return []

    @pytest.fixture
    def backend(self, server: GoDaddyServer, sleeps: list[float]):
        clock = [0.0]

        def sleep(seconds: float) -> None:
            sleeps.append(seconds)
            clock[0] += seconds
            server.advance(seconds)

        return GoDaddyTarget(
            "contract-godaddy",
            api_key=KEY,
            api_secret=SECRET,
            base_url=server.base_url,
            pace_seconds=0.5,
            max_retries=6,
            timeout=10,
            sleep=sleep,
            clock=lambda: clock[0],
        )

    @pytest.fixture
    def write_counter(self, server: GoDaddyServer):
        return lambda: len(server.writes())

    @pytest.fixture
    def server_values(self, server: GoDaddyServer, zone: str):
        return lambda name: server.txt(zone, relative_name(name, zone))

    @pytest.fixture
    def seed_foreign(self, server: GoDaddyServer, zone: str):
        def seed(name: str, value) -> None:
            # GoDaddy's `data` is the joined text: character-string boundaries do not exist there
            data = value if isinstance(value, str) else chunking.join(value)
            server.seed(zone, relative_name(name, zone), data, 3600)

        return seed

    @pytest.fixture
    def delete_by_hand(self, server: GoDaddyServer, zone: str):
        def delete(name: str, value: str) -> None:
            rel = relative_name(name, zone)
            assert value in server.txt(zone, rel)
            server.remove(zone, rel, value)

        return delete

    # -- GoDaddy's limits instead of the contract's hard-coded values ---------------------

    @pytest.mark.parametrize("algorithm", ["rsa-2048", "rsa-4096", "ed25519"])
    def test_create_update_delete(self, backend, zone, server, server_values, write_counter, algorithm) -> None:
        if algorithm != "rsa-4096":
            super().test_create_update_delete(backend, zone, server_values, write_counter, algorithm)
            return
        # an rsa-4096 record is ~750 characters: refused at check (preview), no request made
        rec = TxtRecord(f"s2026._domainkey.{zone}", dkim_value(algorithm, 1), 3600)
        assert len(rec.value) > MAX_DATA
        problems = backend.check(zone, [rec])
        assert len(problems) == 1 and "a 4096-bit RSA key does not fit" in problems[0]
        assert "rsa-2048" in problems[0] and "ed25519" in problems[0]
        with pytest.raises(DnsTargetError, match="4096-bit RSA key does not fit"):
            backend.apply(zone, [rec], [])
        assert server.log == []
        assert server_values(rec.name) == []

    def test_chunk_boundaries_cause_no_diff(self, backend, zone, server, server_values, write_counter) -> None:
        records = [
            TxtRecord(f"b{length}._domainkey.{zone}", filler_value(length), MIN_TTL)
            for length in (1, 254, 255, 256, 509, 510, 511, MAX_DATA)
        ]
        assert backend.apply(zone, records, []) is True
        for rec in records:
            assert server_values(rec.name) == [rec.value], rec.name
        assert backend.present(zone, records) == records

        before = write_counter()
        assert backend.apply(zone, records, []) is False
        self.assert_writes(write_counter, before, 0)

        too_long = [TxtRecord(f"b{n}._domainkey.{zone}", filler_value(n), MIN_TTL) for n in (MAX_DATA + 1, 766)]
        requests_before = len(server.log)
        problems = backend.check(zone, too_long)
        assert len(problems) == 2 and all("at most 512 characters" in p for p in problems)
        assert len(server.log) == requests_before

    def test_apex_and_other_names_untouched(self, backend, zone, seed_foreign, server_values) -> None:
        seed_foreign(zone, SPF)
        dkim = TxtRecord(f"x._domainkey.{zone}", dkim_value("rsa-2048", 5), MIN_TTL)
        assert backend.apply(zone, [dkim], []) is True
        assert backend.apply(zone, [], [dkim]) is True
        assert server_values(zone) == [SPF]
        assert server_values(dkim.name) == []

    def test_one_write_per_apply(self, backend, zone, server, server_values, write_counter) -> None:
        """GoDaddy has no multi-name change: one write per affected name, additions first."""
        first = [TxtRecord(f"k{i}._domainkey.{zone}", dkim_value("ed25519", 10 + i), 600) for i in range(3)]
        assert backend.apply(zone, first, []) is True
        rotated = TxtRecord(f"k9._domainkey.{zone}", dkim_value("rsa-2048", 9), 600)
        writes_before = len(server.writes())
        assert backend.apply(zone, [rotated], first[:2]) is True
        writes = server.writes()[writes_before:]
        assert [(w.method, w.path.rsplit("/", 1)[1]) for w in writes] == [
            ("PUT", "k9._domainkey"),
            ("DELETE", "k0._domainkey"),
            ("DELETE", "k1._domainkey"),
        ]
        assert server_values(first[0].name) == []
        assert server_values(first[1].name) == []
        assert server_values(first[2].name) == [first[2].value]
        assert server_values(rotated.name) == [rotated.value]

        before = write_counter()
        assert backend.apply(zone, [rotated], first[:2]) is False
        self.assert_writes(write_counter, before, 0)

    def test_added_and_removed_in_one_change_stays(self, backend, zone, server_values) -> None:
        rec = TxtRecord(f"both._domainkey.{zone}", dkim_value("ed25519", 20), MIN_TTL)
        assert backend.apply(zone, [rec], []) is True
        assert backend.apply(zone, [rec], [rec]) is False
        assert server_values(rec.name) == [rec.value]

    def test_check_accepts_valid_records(self, backend, zone, server) -> None:
        recs = [
            TxtRecord(f"s1._domainkey.{zone}", dkim_value("rsa-2048", 1), 3600),
            TxtRecord(f"s2._domainkey.{zone}", dkim_value("ed25519", 1), MIN_TTL),
        ]
        assert backend.check(zone, recs) == []
        # the contract's rsa-4096 value and TTL 0 are outside GoDaddy's limits
        refused = [
            TxtRecord(f"s1._domainkey.{zone}", dkim_value("rsa-4096", 1), 3600),
            TxtRecord(f"s2._domainkey.{zone}", dkim_value("ed25519", 1), 0),
        ]
        requests_before = len(server.log)
        problems = backend.check(zone, refused)
        assert len(problems) == 2
        assert "4096-bit RSA key does not fit" in problems[0]
        assert "GoDaddy requires TTL ≥ 600" in problems[1]
        assert len(server.log) == requests_before

    # -- GoDaddy's behaviour was really exercised -------------------------------------------

    def test_rate_limit_and_conflicts_are_absorbed(self, backend, zone, server, server_values, sleeps) -> None:
        recs = [TxtRecord(f"r{i}._domainkey.{zone}", dkim_value("ed25519", 50 + i), MIN_TTL) for i in range(12)]
        assert backend.apply(zone, recs, []) is True  # 24 requests through a budget of 20 per minute
        assert all(server_values(r.name) == [r.value] for r in recs)
        statuses = {r.status for r in server.log}
        assert {409, 429} <= statuses
        assert any(s >= 30 for s in sleeps)  # waited what retryAfterSec asked
