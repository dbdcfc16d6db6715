"""BindFileTarget against real zone files and the real named-checkzone."""

from __future__ import annotations

import base64
import os
import random
import re
import shutil
import stat
import subprocess
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest

from providers.dns.base import TxtRecord
from providers.dns.bindfile import (
    BEGIN_MARKER,
    END_MARKER,
    BindFileTarget,
    bump_serial,
    find_soa_serial,
)
from providers.errors import DnsTargetError

NAMED_CHECKZONE = shutil.which("named-checkzone")
needs_checkzone = pytest.mark.skipif(NAMED_CHECKZONE is None, reason="named-checkzone not installed")

ZONE = "example.com"
TODAY = datetime(2025, 6, 15, 13, 45, tzinfo=timezone.utc)
TODAY_BASE = 2025061500

OPERATOR_ZONE = """\
; example.com -- maintained by hand, please keep the comments
$ORIGIN example.com.
$TTL 1h
@       IN  SOA   ns1.example.com. hostmaster.example.com. (
                  2024010105 ; serial (YYYYMMDDnn)
                  3600       ; refresh
                  900        ; retry
                  1209600    ; expire
                  300 )      ; negative TTL
        IN  NS    ns1
ns1     IN  A     192.0.2.53
www  300 IN A  192.0.2.80   ; web server
@       IN  MX    10 mail
mail    IN  A     192.0.2.25
@       IN  TXT   "v=spf1 mx -all"
sel._domainkey  IN TXT "v=spf1 -all" ; hand-added at the same owner as a DKIM key
hand._domainkey IN TXT ( "v=DKIM1; k=rsa; "
                         "p=HANDMADE" )   ; chunked differently on purpose
quirky  IN  TXT   "semi;colon (paren) \\"quote\\""
"""


def _rsa_value(seed: int = 1) -> str:
    rng = random.Random(seed)
    p = base64.b64encode(rng.randbytes(294)).decode()  # 392 base64 characters: an RSA-2048 SPKI
    assert len(p) == 392
    return f"v=DKIM1; k=rsa; p={p}"


def _ed_value(seed: int = 2) -> str:
    rng = random.Random(seed)
    return "v=DKIM1; k=ed25519; p=" + base64.b64encode(rng.randbytes(32)).decode()


RSA = TxtRecord(f"sel._domainkey.{ZONE}", _rsa_value(), 3600)
ED = TxtRecord(f"ed._domainkey.{ZONE}", _ed_value(), 300)


def _target(tmp_path: Path, **kwargs) -> BindFileTarget:
    kwargs.setdefault("now", lambda: TODAY)
    return BindFileTarget("local-bind", tmp_path, **kwargs)


def _write_zone(tmp_path: Path, text: str = OPERATOR_ZONE, zone: str = ZONE) -> Path:
    path = tmp_path / f"{zone}.zone"
    path.write_text(text)
    return path


def _serial_of(text: str) -> int:
    start, end = find_soa_serial(text)
    return int(text[start:end])


def _with_serial(text: str, serial: int) -> str:
    start, end = find_soa_serial(text)
    return text[:start] + str(serial) + text[end:]


def _checkzone(path: Path, zone: str = ZONE) -> subprocess.CompletedProcess:
    return subprocess.run([NAMED_CHECKZONE, zone, str(path)], capture_output=True, text=True)


def _temp_leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp"))


# --- creating a zone ------------------------------------------------------------


@needs_checkzone
def test_create_zone_passes_named_checkzone(tmp_path: Path) -> None:
    target = _target(tmp_path, create=True)
    assert target.check(ZONE, [RSA, ED]) == []
    assert target.apply(ZONE, [RSA, ED], []) is True
    path = target.zone_path(ZONE)
    assert path == tmp_path / "example.com.zone"
    result = _checkzone(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"loaded serial {TODAY_BASE}" in result.stdout
    text = path.read_text()
    assert "$TTL 3600" in text
    assert "IN\tNS\tns1.example.com." in text
    assert "ns1.example.com.\tIN\tA\t127.0.0.1" in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert target.present(ZONE, [RSA, ED]) == [RSA, ED]
    # the RSA value is longer than 255 octets: several strings of one RR, in parentheses
    assert '( "v=DKIM1; k=rsa; p=' in text


@needs_checkzone
def test_create_with_out_of_zone_nameserver_has_no_glue(tmp_path: Path) -> None:
    target = _target(tmp_path, create=True, create_nameserver="ns.example.net", default_ttl=600)
    assert target.apply(ZONE, [ED], []) is True
    text = target.zone_path(ZONE).read_text()
    assert "$TTL 600" in text
    assert "IN\tNS\tns.example.net." in text
    assert "127.0.0.1" not in text
    result = _checkzone(target.zone_path(ZONE))
    assert result.returncode == 0, result.stdout


def test_missing_file_without_create(tmp_path: Path) -> None:
    target = _target(tmp_path)
    path = tmp_path / "example.com.zone"
    assert target.check(ZONE, [RSA]) == [
        f"zone file {path} not found (set create: true to let dkimroll create it)"
    ]
    with pytest.raises(DnsTargetError, match="not found"):
        target.apply(ZONE, [RSA], [])
    assert target.present(ZONE, [RSA]) == []
    assert not path.exists()


def test_create_with_nothing_to_add_creates_nothing(tmp_path: Path) -> None:
    target = _target(tmp_path, create=True)
    assert target.apply(ZONE, [], [RSA]) is False
    assert not target.zone_path(ZONE).exists()


def test_file_pattern(tmp_path: Path) -> None:
    target = _target(tmp_path, file_pattern="db.{zone}", create=True)
    assert target.zone_path("Example.COM.") == tmp_path / "db.example.com"
    assert target.apply(ZONE, [ED], []) is True
    assert (tmp_path / "db.example.com").exists()


# --- editing the operator's file -----------------------------------------------------


@needs_checkzone
def test_add_keeps_everything_outside_the_block_byte_for_byte(tmp_path: Path) -> None:
    path = _write_zone(tmp_path)
    os.chmod(path, 0o640)
    target = _target(tmp_path)
    assert target.check(ZONE, [RSA, ED]) == []
    assert target.apply(ZONE, [RSA, ED], []) is True

    text = path.read_text()
    head, sep, block = text.partition(BEGIN_MARKER)
    assert sep
    # everything the operator wrote is untouched except the serial; one blank line separates the block
    assert head == _with_serial(OPERATOR_ZONE, TODAY_BASE) + "\n"
    assert block.endswith(END_MARKER + "\n")
    assert block.index("ed._domainkey") < block.index("sel._domainkey")  # sorted
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # mode preserved

    result = _checkzone(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(target.present(ZONE, [RSA, ED])) == {RSA, ED}


def test_add_then_remove_restores_the_original_bytes_but_the_serial(tmp_path: Path) -> None:
    path = _write_zone(tmp_path)
    target = _target(tmp_path)
    assert target.apply(ZONE, [RSA, ED], []) is True
    assert target.apply(ZONE, [], [RSA, ED]) is True
    assert path.read_text() == _with_serial(OPERATOR_ZONE, TODAY_BASE + 1)
    assert BEGIN_MARKER not in path.read_text()


def test_remove_one_keeps_the_other_and_the_block(tmp_path: Path) -> None:
    path = _write_zone(tmp_path)
    target = _target(tmp_path)
    target.apply(ZONE, [RSA, ED], [])
    assert target.apply(ZONE, [], [ED]) is True
    assert target.present(ZONE, [RSA, ED]) == [RSA]
    assert BEGIN_MARKER in path.read_text()


def test_second_apply_with_same_records_writes_nothing(tmp_path: Path) -> None:
    path = _write_zone(tmp_path)
    reloaded = tmp_path / "example.com.zone.reloaded"
    target = _target(tmp_path, reload="/usr/bin/touch {file}.reloaded")
    assert target.apply(ZONE, [RSA, ED], []) is True
    assert reloaded.exists()
    reloaded.unlink()
    before = path.stat()
    content = path.read_bytes()

    assert target.apply(ZONE, [RSA, ED], []) is False
    assert target.apply(ZONE, [ED], []) is False  # a subset already there
    assert target.apply(ZONE, [], []) is False
    after = path.stat()
    assert (after.st_mtime_ns, after.st_ino) == (before.st_mtime_ns, before.st_ino)
    assert path.read_bytes() == content
    assert not reloaded.exists()  # no change, no reload
    assert _temp_leftovers(tmp_path) == []


def test_remove_leaves_hand_added_txt_at_same_owner(tmp_path: Path) -> None:
    path = _write_zone(tmp_path)
    target = _target(tmp_path)
    spf = TxtRecord(f"sel._domainkey.{ZONE}", "v=spf1 -all", 3600)
    assert target.apply(ZONE, [RSA], []) is True
    assert set(target.present(ZONE, [RSA, spf])) == {RSA, spf}

    assert target.apply(ZONE, [], [RSA]) is True
    assert target.present(ZONE, [RSA, spf]) == [spf]
    assert 'sel._domainkey  IN TXT "v=spf1 -all" ; hand-added' in path.read_text()


def test_removing_a_value_outside_the_block_leaves_the_file_alone(tmp_path: Path) -> None:
    path = _write_zone(tmp_path)
    target = _target(tmp_path)
    hand = TxtRecord(f"hand._domainkey.{ZONE}", "v=DKIM1; k=rsa; p=HANDMADE", 3600)
    spf = TxtRecord(f"sel._domainkey.{ZONE}", "v=spf1 -all", 3600)
    before = path.stat()
    assert target.apply(ZONE, [], [hand, spf]) is False
    assert path.read_text() == OPERATOR_ZONE
    assert path.stat().st_mtime_ns == before.st_mtime_ns

    # also when a block exists: the hand-made records stay, the block is unchanged
    target.apply(ZONE, [ED], [])
    text = path.read_text()
    assert target.apply(ZONE, [], [hand, spf]) is False
    assert path.read_text() == text


def test_present_compares_joined_values_not_chunks(tmp_path: Path) -> None:
    _write_zone(tmp_path)
    target = _target(tmp_path)
    hand = TxtRecord(f"hand._domainkey.{ZONE}", "v=DKIM1; k=rsa; p=HANDMADE", 3600)
    split_elsewhere = TxtRecord(f"hand._domainkey.{ZONE}", "v=DKIM1; k=rsa; p=HANDMADE".replace("; ", ";"))
    assert target.present(ZONE, [hand, split_elsewhere]) == [hand]
    # names compare case-insensitively, with or without the final dot
    assert target.present(ZONE, [TxtRecord(f"HAND._domainkey.{ZONE}.", hand.value)]) != []


def test_values_needing_escapes_round_trip(tmp_path: Path) -> None:
    _write_zone(tmp_path)
    target = _target(tmp_path)
    odd = TxtRecord(f"odd._domainkey.{ZONE}", 'v=DKIM1; n="quoted; (paren) back\\slash"; p=' + "A" * 300)
    assert target.apply(ZONE, [odd], []) is True
    assert target.present(ZONE, [odd]) == [odd]
    assert target.apply(ZONE, [odd], []) is False
    assert target.apply(ZONE, [], [odd]) is True
    assert target.present(ZONE, [odd]) == []


def test_hand_deleted_record_is_detected_by_present(tmp_path: Path) -> None:
    path = _write_zone(tmp_path)
    target = _target(tmp_path)
    target.apply(ZONE, [RSA, ED], [])
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(line for line in lines if not line.startswith("ed._domainkey")))
    assert target.present(ZONE, [RSA, ED]) == [RSA]
    # and the next apply puts it back
    assert target.apply(ZONE, [RSA, ED], []) is True
    assert set(target.present(ZONE, [RSA, ED])) == {RSA, ED}


def test_ttl_change_rewrites_the_record(tmp_path: Path) -> None:
    path = _write_zone(tmp_path)
    target = _target(tmp_path)
    target.apply(ZONE, [ED], [])
    longer = TxtRecord(ED.name, ED.value, 7200)
    assert target.apply(ZONE, [longer], []) is True
    assert f"ed._domainkey.{ZONE}. 7200 IN TXT" in path.read_text()
    assert f"ed._domainkey.{ZONE}. 300 IN TXT" not in path.read_text()


@needs_checkzone
def test_symlinked_zone_file_is_edited_in_place(tmp_path: Path) -> None:
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    real = _write_zone(real_dir)
    link_dir = tmp_path / "links"
    link_dir.mkdir()
    (link_dir / "example.com.zone").symlink_to(real)
    target = _target(link_dir)
    assert target.apply(ZONE, [ED], []) is True
    assert (link_dir / "example.com.zone").is_symlink()
    assert BEGIN_MARKER in real.read_text()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_owner_and_group_preserved_as_root(tmp_path: Path) -> None:
    path = _write_zone(tmp_path)
    os.chown(path, 65534, 65534)
    os.chmod(path, 0o640)
    target = _target(tmp_path, check_command=None)
    assert target.apply(ZONE, [ED], []) is True
    info = path.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (65534, 65534, 0o640)


# --- the SOA serial ---------------------------------------------------------------------


def test_serial_below_today_becomes_today_00(tmp_path: Path) -> None:
    path = _write_zone(tmp_path)  # 2024010105
    _target(tmp_path).apply(ZONE, [ED], [])
    assert _serial_of(path.read_text()) == TODAY_BASE


@pytest.mark.parametrize("old", [TODAY_BASE, TODAY_BASE + 7, 2099123199, 4000000000])
def test_serial_at_or_above_today_is_incremented(tmp_path: Path, old: int) -> None:
    path = _write_zone(tmp_path, _with_serial(OPERATOR_ZONE, old))
    _target(tmp_path).apply(ZONE, [ED], [])
    assert _serial_of(path.read_text()) == old + 1


def test_serial_uses_utc_date() -> None:
    from datetime import timedelta

    late_in_utc_minus_5 = datetime(2025, 6, 15, 22, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert bump_serial(1, late_in_utc_minus_5) == 2025061600
    assert bump_serial(2025061699, late_in_utc_minus_5) == 2025061700
    assert bump_serial(2**32 - 1, TODAY) == 0  # RFC 1982 wrap, never an invalid serial


def test_plain_numeric_serial_is_incremented_each_change(tmp_path: Path) -> None:
    path = _write_zone(tmp_path, _with_serial(OPERATOR_ZONE, 41))
    target = _target(tmp_path)
    target.apply(ZONE, [ED], [])
    target.apply(ZONE, [RSA], [])
    assert _serial_of(path.read_text()) == TODAY_BASE + 1


SOA_VARIANTS = [
    # owner '@', class then TTL
    "$TTL 300\n@ IN 300 SOA ns1.example.com. hostmaster.example.com. 2020010100 3600 900 1209600 300\n"
    "@ NS ns1\nns1 A 192.0.2.1\n",
    # explicit owner, TTL then class
    "example.com. 300 IN SOA ns1 hostmaster ( 2020010100 3600 900 1209600 300 )\n"
    "example.com. 300 IN NS ns1\nns1 300 A 192.0.2.1\n",
    # no class, no TTL; every field on its own line with comments that look like data
    "$TTL 1d\n@ SOA ( ; comment with ( parens and \"quotes\" and SOA 1 2 3\n"
    "  ns1.example.com.   ; mname\n"
    "  hostmaster         ; rname\n"
    "  2020010100         ; serial 999\n"
    "  1h 15m 2w 5m )\n"
    "  NS ns1 ; indented: same owner\n"
    "ns1 A 192.0.2.1\n",
    # SOA not the first record, indented continuation of the apex owner
    "$ORIGIN example.com.\n$TTL 60\n@ NS ns1\n  IN SOA ns1 hostmaster (\n\n   2020010100\n 1 1 1 1 )\n"
    "ns1 IN A 192.0.2.1\n",
    # a TXT before the SOA whose text mentions SOA and a number
    "$TTL 60\nnote IN TXT \"SOA ns1 hostmaster 77\" ; not the SOA\n"
    "@ IN SOA ns1 hostmaster 2020010100 1 1 1 1\n@ IN NS ns1\nns1 IN A 192.0.2.1\n",
]


@pytest.mark.parametrize("text", SOA_VARIANTS)
def test_only_the_serial_of_the_soa_changes(tmp_path: Path, text: str) -> None:
    path = _write_zone(tmp_path, text)
    target = _target(tmp_path)
    assert target.check(ZONE, [ED]) == []
    assert target.apply(ZONE, [ED], []) is True
    new = path.read_text()
    head = new.partition(BEGIN_MARKER)[0]
    assert head == text.replace("2020010100", str(TODAY_BASE)) + "\n"
    if NAMED_CHECKZONE:
        result = _checkzone(path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"loaded serial {TODAY_BASE}" in result.stdout


# --- refusals: nothing written ------------------------------------------------------


def test_syntax_error_in_existing_file_is_refused_and_file_untouched(tmp_path: Path) -> None:
    broken = OPERATOR_ZONE.replace("192.0.2.80", "not-an-address")
    path = _write_zone(tmp_path, broken)
    before = path.read_bytes()
    target = _target(tmp_path, reload="/usr/bin/touch {file}.reloaded")

    problems = target.check(ZONE, [ED])
    assert len(problems) == 1
    assert str(path) in problems[0] and "does not parse" in problems[0]

    with pytest.raises(DnsTargetError) as caught:
        target.apply(ZONE, [ED], [])
    assert str(path) in str(caught.value)
    assert path.read_bytes() == before
    assert not (tmp_path / "example.com.zone.reloaded").exists()
    assert _temp_leftovers(tmp_path) == []
    with pytest.raises(DnsTargetError, match="does not parse"):
        target.present(ZONE, [ED])


def test_damaged_block_markers_are_refused(tmp_path: Path) -> None:
    path = _write_zone(tmp_path, OPERATOR_ZONE + BEGIN_MARKER + "\n")
    before = path.read_bytes()
    target = _target(tmp_path)
    assert any("markers are damaged" in p for p in target.check(ZONE, [ED]))
    with pytest.raises(DnsTargetError, match="markers are damaged"):
        target.apply(ZONE, [ED], [])
    assert path.read_bytes() == before


@needs_checkzone
def test_named_checkzone_rejection_leaves_file_unchanged(tmp_path: Path) -> None:
    # dnspython accepts an in-zone NS without address records; named-checkzone does not
    text = OPERATOR_ZONE.replace("        IN  NS    ns1\n", "        IN  NS    ns1\n        IN  NS    ns2\n")
    path = _write_zone(tmp_path, text)
    before = path.read_bytes()
    target = _target(tmp_path, reload="/usr/bin/touch {file}.reloaded")
    with pytest.raises(DnsTargetError) as caught:
        target.apply(ZONE, [ED], [])
    assert "named-checkzone rejected" in str(caught.value)
    assert "has no address records" in str(caught.value)
    assert path.read_bytes() == before
    assert not (tmp_path / "example.com.zone.reloaded").exists()
    assert _temp_leftovers(tmp_path) == []


def test_failing_check_command_leaves_file_unchanged(tmp_path: Path) -> None:
    script = tmp_path / "reject.sh"
    seen = tmp_path / "seen"
    script.write_text(f'#!/bin/sh\necho "$1 $2" > {seen}\necho "policy says no" >&2\nexit 1\n')
    script.chmod(0o755)
    path = _write_zone(tmp_path)
    target = _target(tmp_path, check_command=str(script))
    assert target.check(ZONE, [ED]) == []
    with pytest.raises(DnsTargetError, match="policy says no"):
        target.apply(ZONE, [ED], [])
    assert path.read_text() == OPERATOR_ZONE
    zone_arg, file_arg = seen.read_text().split()
    assert zone_arg == ZONE
    # the checker saw the candidate in the zone directory, which was then removed
    assert Path(file_arg).parent == tmp_path and Path(file_arg).name.startswith(".example.com.zone.")
    assert not Path(file_arg).exists()


def test_missing_custom_check_command_is_a_problem(tmp_path: Path) -> None:
    _write_zone(tmp_path)
    target = _target(tmp_path, check_command="/nonexistent/zonecheck")
    assert target.check(ZONE, [ED]) == ["check command '/nonexistent/zonecheck' not found"]
    with pytest.raises(DnsTargetError, match="not found"):
        target.apply(ZONE, [ED], [])


def test_names_outside_the_zone_and_bad_ttls_are_rejected(tmp_path: Path) -> None:
    path = _write_zone(tmp_path)
    target = _target(tmp_path)
    outside = TxtRecord("sel._domainkey.example.org", "v=DKIM1; p=x")
    suffix_only = TxtRecord("sel._domainkey.badexample.com", "v=DKIM1; p=x")
    negative = TxtRecord(f"a._domainkey.{ZONE}", "v=DKIM1; p=x", -1)
    huge = TxtRecord(f"b._domainkey.{ZONE}", "v=DKIM1; p=x", 2**31)
    problems = target.check(ZONE, [outside, suffix_only, negative, huge, ED])
    assert problems == [
        "record sel._domainkey.example.org is not within zone example.com",
        "record sel._domainkey.badexample.com is not within zone example.com",
        f"record a._domainkey.{ZONE}: TTL -1 is out of range (0..2147483647)",
        f"record b._domainkey.{ZONE}: TTL 2147483648 is out of range (0..2147483647)",
    ]
    with pytest.raises(DnsTargetError, match="not within zone"):
        target.apply(ZONE, [ED, outside], [])
    assert path.read_text() == OPERATOR_ZONE


# --- reload ------------------------------------------------------------------------


def test_reload_runs_only_on_change_with_placeholders(tmp_path: Path) -> None:
    path = _write_zone(tmp_path)
    log = tmp_path / "reload.log"
    script = tmp_path / "reload.sh"
    script.write_text(f'#!/bin/sh\necho "$1 $2" >> {log}\n')
    script.chmod(0o755)
    target = _target(tmp_path, reload=f"{script} {{zone}} {{file}}")
    target.apply(ZONE, [ED], [])
    target.apply(ZONE, [ED], [])
    target.apply(ZONE, [], [ED])
    target.apply(ZONE, [], [ED])
    assert log.read_text().splitlines() == [f"{ZONE} {path}"] * 2


def test_reload_failure_reports_stderr(tmp_path: Path) -> None:
    path = _write_zone(tmp_path)
    target = _target(tmp_path, reload="sh -c 'echo rndc: connection refused >&2; exit 3'")
    with pytest.raises(DnsTargetError) as caught:
        target.apply(ZONE, [ED], [])
    message = str(caught.value)
    assert "rndc: connection refused" in message
    assert "exited 3" in message and "was written" in message
    assert BEGIN_MARKER in path.read_text()  # the file change stands; only the reload failed


# --- concurrency -----------------------------------------------------------------------


def test_concurrent_appliers_both_land_thanks_to_the_lock(tmp_path: Path) -> None:
    path = _write_zone(tmp_path)
    per_thread = 5
    batches = {
        who: [
            TxtRecord(f"{who}{i}._domainkey.{ZONE}", f"v=DKIM1; k=ed25519; p={who}{i}", 300)
            for i in range(per_thread)
        ]
        for who in ("alpha", "beta")
    }
    start = threading.Barrier(2)
    failures: list[BaseException] = []

    def run(records: list[TxtRecord]) -> None:
        target = _target(tmp_path, check_command=None)  # one backend object per thread, like the engine
        start.wait()
        try:
            for record in records:
                assert target.apply(ZONE, [record], []) is True
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(batch,)) for batch in batches.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    everything = batches["alpha"] + batches["beta"]
    assert set(_target(tmp_path).present(ZONE, everything)) == set(everything)
    # ten changes, none lost: the serial moved ten times
    assert _serial_of(path.read_text()) == TODAY_BASE + 2 * per_thread - 1
    assert re.findall(r"BEGIN dkimroll", path.read_text()) == ["BEGIN dkimroll"]


# --- ManualTarget: shares the block format, writes an export file only ------------------


def test_manual_target_exports_records_to_paste(tmp_path: Path) -> None:
    from providers.dns.manual import ManualTarget

    target = ManualTarget("by-hand", export_dir=tmp_path / "export")
    assert target.check(ZONE, [RSA, ED]) == []
    assert target.present(ZONE, [RSA, ED]) == [RSA, ED]  # it cannot know; it trusts the operator

    assert target.apply(ZONE, [RSA, ED], []) is True
    path = tmp_path / "export" / "example.com.records.txt"
    before = path.stat()
    assert target.apply(ZONE, [RSA, ED], []) is False
    assert path.stat().st_mtime_ns == before.st_mtime_ns

    assert target.apply(ZONE, [], [ED]) is True
    text = path.read_text()
    block = text.partition(BEGIN_MARKER)[2].partition(END_MARKER)[0]
    assert "sel._domainkey.example.com. 3600 IN TXT (" in block
    assert "ed._domainkey" not in block
    assert f"; ed._domainkey.{ZONE}. 300 IN TXT" in text.partition(END_MARKER)[2]  # listed to delete

    if NAMED_CHECKZONE:  # the block pastes into a real zone
        zone_path = _write_zone(tmp_path, OPERATOR_ZONE + BEGIN_MARKER + block + END_MARKER + "\n")
        assert _checkzone(zone_path).returncode == 0
        assert _target(tmp_path).present(ZONE, [RSA]) == [RSA]


def test_manual_target_without_export_dir_writes_nothing(tmp_path: Path) -> None:
    from providers.dns.manual import ManualTarget

    target = ManualTarget("by-hand")
    assert target.apply(ZONE, [RSA], [ED]) is False
    assert list(tmp_path.iterdir()) == []
