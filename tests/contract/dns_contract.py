"""One contract every DNS target passes: the same tests against BIND files, RFC 2136 and Route53.

A target's test module subclasses `DnsTargetContract` (as `Test<Target>Contract`)
and provides these fixtures; each reads or writes the server through the
server's OWN interface, never through the backend under test:

* `backend`   -- the DnsBackend under test, for zone `zone`;
* `zone`      -- the zone's name (default `contract.test`);
* `seed_foreign(name, value)` -- put a TXT value dkimroll does not manage at
  `name` (SPF, a verification token). `value` is the joined text, or a tuple
  of character-strings (bytes) to choose the chunk boundaries;
* `server_values(name)` -- the joined TXT values the server holds at `name`;
* `delete_by_hand(name, value)` -- remove one TXT value as an operator would;
* `write_counter()` -- how many writes reached the server so far (file
  rewrites, UPDATE messages, change batches), or None if not countable.

Class attribute `adopts_identical_foreign_values`: True when a value already
held by the server (written by someone else, chunked differently) counts as
published, so `apply` writes nothing for it. The BIND file target owns only
its managed block and sets it False.
"""

from __future__ import annotations

import base64
import functools
import random
from typing import Callable, Optional

import pytest

from keys import keygen, record
from providers.dns.base import TxtRecord
from providers.errors import DnsTargetError

ZONE = "contract.test"
SPF = "v=spf1 mx -all"
TOKEN = "google-site-verification=Zx81QmA0tX7bV3yHcP2LsW9kR4nE6dJfGuI1oTqYvBs"


@functools.lru_cache(maxsize=None)
def dkim_value(algorithm: str, serial: int = 0) -> str:
    """A real DKIM record for a freshly generated key (cached per algorithm and serial)."""
    spec = keygen.parse_algorithm(algorithm)
    private = keygen.generate(spec)
    return record.build(record.DkimRecord(k=spec.key_type, p=keygen.public_p_value(private)))


def filler_value(length: int, seed: int = 0) -> str:
    """A DKIM-looking value of exactly `length` ASCII characters (a bare base64 run when short)."""
    head = "v=DKIM1; k=rsa; p=" if length > 40 else ""
    rng = random.Random(seed * 7919 + length)
    body = base64.b64encode(rng.randbytes(length)).decode()[: length - len(head)]
    value = head + body
    assert len(value) == length
    return value


class DnsTargetContract:
    """Abstract contract suite: subclass it and provide the fixtures."""

    adopts_identical_foreign_values = True

    # -- fixtures a subclass provides ---------------------------------------------

    @pytest.fixture
    def zone(self) -> str:
        return ZONE

    @pytest.fixture
    def backend(self):
        raise NotImplementedError("the target's contract module provides `backend`")

    @pytest.fixture
    def seed_foreign(self) -> Callable[[str, "str | tuple[bytes, ...]"], None]:
        raise NotImplementedError("the target's contract module provides `seed_foreign`")

    @pytest.fixture
    def server_values(self) -> Callable[[str], list[str]]:
        raise NotImplementedError("the target's contract module provides `server_values`")

    @pytest.fixture
    def delete_by_hand(self) -> Callable[[str, str], None]:
        raise NotImplementedError("the target's contract module provides `delete_by_hand`")

    @pytest.fixture
    def write_counter(self) -> Callable[[], Optional[int]]:
        raise NotImplementedError("the target's contract module provides `write_counter`")

    # -- helpers ------------------------------------------------------------------------

    @staticmethod
    def assert_writes(write_counter, before: Optional[int], expected: int) -> None:
        after = write_counter()
        if before is None or after is None:
            return
        assert after - before == expected, f"expected {expected} write(s), the server saw {after - before}"

    # -- the contract -------------------------------------------------------------------

    @pytest.mark.parametrize("algorithm", ["rsa-2048", "rsa-4096", "ed25519"])
    def test_create_update_delete(self, backend, zone, server_values, write_counter, algorithm) -> None:
        name = f"s2026._domainkey.{zone}"
        old = TxtRecord(name, dkim_value(algorithm, 1), 3600)
        new = TxtRecord(name, dkim_value(algorithm, 2), 3600)
        expected_len = {"rsa-2048": (400, 420), "rsa-4096": (740, 800), "ed25519": (60, 70)}[algorithm]
        assert expected_len[0] <= len(old.value) <= expected_len[1]

        before = write_counter()
        assert backend.apply(zone, [old], []) is True
        self.assert_writes(write_counter, before, 1)
        assert server_values(name) == [old.value]
        assert backend.present(zone, [old, new]) == [old]

        before = write_counter()
        assert backend.apply(zone, [new], [old]) is True
        self.assert_writes(write_counter, before, 1)
        assert server_values(name) == [new.value]
        assert backend.present(zone, [old, new]) == [new]

        before = write_counter()
        assert backend.apply(zone, [], [new]) is True
        self.assert_writes(write_counter, before, 1)
        assert server_values(name) == []
        assert backend.present(zone, [old, new]) == []

    def test_chunk_boundaries_cause_no_diff(self, backend, zone, server_values, write_counter) -> None:
        records = [
            TxtRecord(f"b{length}._domainkey.{zone}", filler_value(length), 300)
            for length in (1, 254, 255, 256, 509, 510, 511, 766)
        ]
        assert backend.apply(zone, records, []) is True
        for rec in records:
            assert server_values(rec.name) == [rec.value], rec.name
        assert backend.present(zone, records) == records

        before = write_counter()
        assert backend.apply(zone, records, []) is False
        self.assert_writes(write_counter, before, 0)

    def test_differently_chunked_value_counts_as_present(
        self, backend, zone, seed_foreign, server_values, write_counter
    ) -> None:
        name = f"hand._domainkey.{zone}"
        value = dkim_value("rsa-2048", 3)
        octets = value.encode()
        seed_foreign(name, (octets[:100], octets[100:200], octets[200:]))  # not our 255-octet cut
        assert server_values(name) == [value]
        rec = TxtRecord(name, value, 3600)
        assert backend.present(zone, [rec]) == [rec]
        if not self.adopts_identical_foreign_values:
            return
        before = write_counter()
        assert backend.apply(zone, [rec], []) is False
        self.assert_writes(write_counter, before, 0)
        assert server_values(name) == [value]

    def test_foreign_values_survive_add_and_remove(self, backend, zone, seed_foreign, server_values) -> None:
        name = f"sel._domainkey.{zone}"
        other = f"_verify.{zone}"
        seed_foreign(name, SPF)
        seed_foreign(other, TOKEN)
        dkim = TxtRecord(name, dkim_value("ed25519", 4), 3600)

        assert backend.apply(zone, [dkim], []) is True
        assert sorted(server_values(name)) == sorted([SPF, dkim.value])
        assert server_values(other) == [TOKEN]

        assert backend.apply(zone, [], [dkim]) is True
        assert server_values(name) == [SPF]
        assert server_values(other) == [TOKEN]

    def test_apex_and_other_names_untouched(self, backend, zone, seed_foreign, server_values) -> None:
        seed_foreign(zone, SPF)
        dkim = TxtRecord(f"x._domainkey.{zone}", dkim_value("rsa-2048", 5), 300)
        assert backend.apply(zone, [dkim], []) is True
        assert backend.apply(zone, [], [dkim]) is True
        assert server_values(zone) == [SPF]
        assert server_values(dkim.name) == []

    def test_reapply_writes_nothing(self, backend, zone, server_values, write_counter) -> None:
        recs = [
            TxtRecord(f"a._domainkey.{zone}", dkim_value("rsa-2048", 6), 3600),
            TxtRecord(f"b._domainkey.{zone}", dkim_value("ed25519", 6), 3600),
        ]
        assert backend.apply(zone, recs, []) is True
        before = write_counter()
        assert backend.apply(zone, recs, []) is False
        never = TxtRecord(f"gone._domainkey.{zone}", dkim_value("ed25519", 7), 3600)
        assert backend.apply(zone, [], [never]) is False
        assert backend.apply(zone, [], []) is False
        self.assert_writes(write_counter, before, 0)
        assert server_values(recs[0].name) == [recs[0].value]

    def test_one_write_per_apply(self, backend, zone, server_values, write_counter) -> None:
        first = [TxtRecord(f"k{i}._domainkey.{zone}", dkim_value("ed25519", 10 + i), 600) for i in range(3)]
        assert backend.apply(zone, first, []) is True
        rotated = TxtRecord(f"k9._domainkey.{zone}", dkim_value("rsa-2048", 9), 600)
        before = write_counter()
        assert backend.apply(zone, [rotated], first[:2]) is True
        self.assert_writes(write_counter, before, 1)
        assert server_values(first[0].name) == []
        assert server_values(first[1].name) == []
        assert server_values(first[2].name) == [first[2].value]
        assert server_values(rotated.name) == [rotated.value]

    def test_added_and_removed_in_one_change_stays(self, backend, zone, server_values) -> None:
        rec = TxtRecord(f"both._domainkey.{zone}", dkim_value("ed25519", 20), 300)
        assert backend.apply(zone, [rec], []) is True
        assert backend.apply(zone, [rec], [rec]) is False
        assert server_values(rec.name) == [rec.value]

    def test_present_detects_a_value_deleted_by_hand(self, backend, zone, delete_by_hand, server_values) -> None:
        one = TxtRecord(f"one._domainkey.{zone}", dkim_value("rsa-2048", 30), 3600)
        two = TxtRecord(f"two._domainkey.{zone}", dkim_value("ed25519", 30), 3600)
        assert backend.apply(zone, [one, two], []) is True
        assert backend.present(zone, [one, two]) == [one, two]
        delete_by_hand(one.name, one.value)
        assert server_values(one.name) == []
        assert backend.present(zone, [one, two]) == [two]
        # and publishing it again repairs the drift
        assert backend.apply(zone, [one], []) is True
        assert backend.present(zone, [one, two]) == [one, two]

    def test_check_accepts_valid_records(self, backend, zone) -> None:
        recs = [
            TxtRecord(f"s1._domainkey.{zone}", dkim_value("rsa-4096", 1), 3600),
            TxtRecord(f"s2._domainkey.{zone}", dkim_value("ed25519", 1), 0),
        ]
        assert backend.check(zone, recs) == []

    def test_check_rejects_names_outside_the_zone(self, backend, zone, server_values, write_counter) -> None:
        value = dkim_value("ed25519", 40)
        suffix_trap = TxtRecord(f"sel._domainkey.evil{zone}", value, 3600)  # endswith() would accept it
        elsewhere = TxtRecord("sel._domainkey.example.org", value, 3600)
        inside = TxtRecord(f"sel._domainkey.{zone}", value, 3600)
        problems = backend.check(zone, [suffix_trap, elsewhere, inside])
        text = "\n".join(problems)
        assert f"evil{zone}" in text
        assert "example.org" in text
        assert len([p for p in problems if "within zone" in p or "not in zone" in p]) == 2, problems

        before = write_counter()
        with pytest.raises(DnsTargetError) as info:
            backend.apply(zone, [inside, suffix_trap], [])
        assert f"evil{zone}" in str(info.value)
        self.assert_writes(write_counter, before, 0)
        assert server_values(inside.name) == []

    def test_check_rejects_bad_ttl(self, backend, zone) -> None:
        value = dkim_value("ed25519", 41)
        problems = backend.check(zone, [TxtRecord(f"t._domainkey.{zone}", value, -1),
                                        TxtRecord(f"u._domainkey.{zone}", value, 2**31)])
        assert len([p for p in problems if "TTL" in p]) == 2, problems
