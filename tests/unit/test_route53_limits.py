"""Route53's TXT and change-batch limits, enforced by dkimroll itself (the emulator does not).

Pure functions only: rendering/parsing of Route53 TXT values, `validate_batch`
and `split_batches`, and the retry policy with a fake API method.
"""

from __future__ import annotations

import pytest

from keys import chunking
from providers.dns import route53
from providers.dns.route53 import (
    MAX_BATCH_CHARS,
    MAX_BATCH_RECORDS,
    Route53Target,
    batch_size,
    join_value,
    parse_value,
    render_value,
    split_batches,
    validate_batch,
)
from providers.errors import ConfigError, DnsTargetError


def change(action: str, name: str, values: list[str], ttl: int = 300) -> dict:
    return {
        "Action": action,
        "ResourceRecordSet": {
            "Name": name,
            "Type": "TXT",
            "TTL": ttl,
            "ResourceRecords": [{"Value": v} for v in values],
        },
    }


def quoted(length: int, char: str = "a") -> str:
    return '"' + char * length + '"'


# --- values -------------------------------------------------------------------------------


def test_a_300_character_string_is_character_string_too_long() -> None:
    problems = validate_batch([change("UPSERT", "sel._domainkey.example.com.", [quoted(300)])])
    assert len(problems) == 1
    assert "CharacterStringTooLong" in problems[0]
    assert "300 octets" in problems[0]
    assert "sel._domainkey.example.com" in problems[0]


def test_255_octets_is_the_largest_string() -> None:
    assert validate_batch([change("CREATE", "a.example.com.", [quoted(255)])]) == []
    assert validate_batch([change("CREATE", "a.example.com.", [quoted(256)])])


def test_escapes_count_as_one_octet() -> None:
    # 255 octets, written with 85 octal escapes (4 characters each): still one legal string
    text = '"' + "\\303\\251a" * 85 + '"'
    assert len(parse_value(text)[0]) == 255
    assert validate_batch([change("CREATE", "a.example.com.", [text])]) == []


def test_rendered_values_respect_the_string_limit() -> None:
    for length in (1, 255, 256, 300, 511, 790, 2000):
        value = "p=" + "A" * (length - 2)
        text = render_value(value)
        assert validate_batch([change("CREATE", "s._domainkey.example.com.", [text])]) == []
        assert join_value(text) == value
        assert all(len(s) <= 255 for s in parse_value(text))


def test_one_value_is_at_most_4000_characters() -> None:
    ok = " ".join(quoted(250) for _ in range(15))  # 15 * 253 - 1 + 14 = 3808 characters
    assert len(ok) <= 4000
    assert validate_batch([change("CREATE", "a.example.com.", [ok])]) == []
    too_long = " ".join(quoted(250) for _ in range(16))
    assert len(too_long) > 4000
    problems = validate_batch([change("CREATE", "a.example.com.", [too_long])])
    assert any("4000" in p for p in problems)


def test_render_is_one_value_of_quoted_strings() -> None:
    value = "v=DKIM1; k=rsa; p=" + "B" * 400
    text = render_value(value)
    assert text.count('"') == 4  # two strings, quoted, in ONE value
    first, second = parse_value(text)
    assert len(first) == 255 and first + second == value.encode()


def test_route53_escapes_are_octal() -> None:
    assert render_value("exämple") == '"ex\\303\\244mple"'
    assert join_value('"ex\\303\\244mple"') == "exämple"
    assert render_value('say "hi" \\ bye') == '"say \\"hi\\" \\\\ bye"'
    assert join_value(render_value('say "hi" \\ bye')) == 'say "hi" \\ bye'
    assert render_value("tab\there") == '"tab\\011here"'


def test_parse_values_as_route53_returns_them() -> None:
    assert parse_value('"v=spf1 mx" " -all"') == (b"v=spf1 mx", b" -all")
    assert parse_value("unquoted words") == (b"unquoted", b"words")
    assert parse_value('""') == (b"",)
    assert join_value('"a;b" "c"') == "a;bc"
    for bad in ('"unterminated', 'a"b', "", "   ", '"x\\'):
        with pytest.raises(ValueError):
            parse_value(bad)


def test_chunk_boundaries_do_not_change_the_joined_value() -> None:
    value = "v=DKIM1; k=rsa; p=" + "C" * 700
    ours = render_value(value)
    theirs = " ".join('"' + value[i : i + 100] + '"' for i in range(0, len(value), 100))
    assert ours != theirs
    assert join_value(ours) == join_value(theirs) == value


def test_non_utf8_octets_survive() -> None:
    text = '"\\377\\376x"'
    assert render_value(join_value(text)) == text
    assert chunking.chunk(join_value(text)) == (b"\xff\xfex",)


# --- batches ---------------------------------------------------------------------------------


def test_upsert_counts_twice() -> None:
    assert batch_size([change("CREATE", "a.", ["x", "yy"])]) == (2, 3)
    assert batch_size([change("DELETE", "a.", ["x", "yy"])]) == (2, 3)
    assert batch_size([change("UPSERT", "a.", ["x", "yy"])]) == (4, 6)


def test_1000_records_per_batch() -> None:
    creates = [change("CREATE", f"n{i}.example.com.", ['"v"']) for i in range(MAX_BATCH_RECORDS)]
    assert validate_batch(creates) == []
    problems = validate_batch(creates + [change("CREATE", "one-more.example.com.", ['"v"'])])
    assert any("1001 ResourceRecord" in p for p in problems)

    upserts = [change("UPSERT", f"n{i}.example.com.", ['"v"']) for i in range(500)]
    assert validate_batch(upserts) == []
    problems = validate_batch(upserts + [change("UPSERT", "x.example.com.", ['"v"'])])
    assert any("1002 ResourceRecord" in p and "UPSERT counted twice" in p for p in problems)


def test_32000_characters_per_batch() -> None:
    value = quoted(250)  # 252 characters
    n = MAX_BATCH_CHARS // 252  # 126 values: 31752 characters
    creates = [change("CREATE", "a.example.com.", [value] * n)]
    assert validate_batch(creates) == []
    assert validate_batch([change("CREATE", "a.example.com.", [value] * (n + 1))])
    half = [change("UPSERT", "a.example.com.", [value] * (n // 2))]  # 63 values, counted twice: 31752
    assert validate_batch(half) == []
    problems = validate_batch([change("UPSERT", "a.example.com.", [value] * (n // 2 + 1))])
    assert any("characters of values" in p for p in problems)


def test_small_changes_stay_in_one_batch() -> None:
    changes = [change("UPSERT", f"s{i}._domainkey.example.com.", [render_value("p=" + "D" * 790)]) for i in range(10)]
    assert split_batches(changes) == [changes]
    assert split_batches([]) == []


def test_split_at_1000_records_with_upsert_counted_twice() -> None:
    # 300 records each: CREATE weighs 300, UPSERT 600
    big_create = [change("CREATE", f"c{i}.example.com.", ['"v"'] * 300) for i in range(4)]
    assert [len(b) for b in split_batches(big_create)] == [3, 1]
    big_upsert = [change("UPSERT", f"u{i}.example.com.", ['"v"'] * 300) for i in range(4)]
    assert [len(b) for b in split_batches(big_upsert)] == [1, 1, 1, 1]
    mixed = [big_upsert[0], big_create[0], big_create[1], big_upsert[1]]
    batches = split_batches(mixed)
    assert [len(b) for b in batches] == [2, 2]  # 600+300 | 300+600
    assert [c for b in batches for c in b] == mixed  # order kept, nothing lost
    for batch in batches:
        assert validate_batch(batch) == []


def test_split_at_32000_characters_with_upsert_counted_twice() -> None:
    value = render_value("v=DKIM1; k=rsa; p=" + "E" * 772)  # a 4096-bit key: 796 characters
    per_upsert = 2 * len(value)
    changes = [change("UPSERT", f"s{i}._domainkey.example.com.", [value]) for i in range(50)]
    batches = split_batches(changes)
    per_batch = MAX_BATCH_CHARS // per_upsert
    assert [len(b) for b in batches] == [per_batch] * (50 // per_batch) + ([50 % per_batch] if 50 % per_batch else [])
    for batch in batches:
        assert validate_batch(batch) == []
        assert batch_size(batch)[1] <= MAX_BATCH_CHARS
    creates = [dict(c, Action="CREATE") for c in changes]
    assert len(split_batches(creates)) < len(batches)  # CREATE counts once


def test_an_oversized_single_change_gets_its_own_batch_and_is_reported() -> None:
    huge = change("CREATE", "h.example.com.", ['"v"'] * 1001)
    small = change("CREATE", "s.example.com.", ['"v"'])
    batches = split_batches([small, huge, small])
    assert batches == [[small], [huge], [small]]
    assert validate_batch(batches[1])


# --- configuration and retries ------------------------------------------------------------------


def test_constructor_rejects_bad_settings() -> None:
    with pytest.raises(ConfigError, match=r"dkimroll:dns.aws.max_attempts"):
        Route53Target("aws", max_attempts=0)
    with pytest.raises(ConfigError, match=r"dkimroll:dns.aws.wait_timeout"):
        Route53Target("aws", wait_timeout=0)
    with pytest.raises(ConfigError, match=r"dkimroll:dns.aws.hosted_zone_id"):
        Route53Target("aws", hosted_zone_id="Z1; DROP")
    assert Route53Target("aws", hosted_zone_id="/hostedzone/Z0123ABC").hosted_zone_id == "Z0123ABC"



def _client_error(code: str, status: int):
    import botocore.exceptions

    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": f"{code} happened"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "ChangeResourceRecordSets",
    )


@pytest.mark.parametrize(
    "code,status",
    [("Throttling", 400), ("ThrottlingException", 400), ("PriorRequestNotComplete", 400),
     ("RequestLimitExceeded", 400), ("InternalFailure", 500), ("ServiceUnavailable", 503)],
)
def test_retryable_errors_back_off_with_jitter(code: str, status: int) -> None:
    target = Route53Target("aws", max_attempts=5)
    sleeps: list[float] = []
    target._sleep = sleeps.append
    target._random = lambda: 1.0  # the top of each jitter window
    failures = [_client_error(code, status)] * 3

    def method(**kwargs):
        if failures:
            raise failures.pop(0)
        return {"ok": kwargs}

    assert target._call("example.com", "ChangeResourceRecordSets", method, X=1) == {"ok": {"X": 1}}
    assert sleeps == [0.5, 1.0, 2.0]


def test_retries_are_bounded_and_reported() -> None:
    target = Route53Target("aws", max_attempts=3)
    sleeps: list[float] = []
    target._sleep = sleeps.append
    calls = []

    def method(**kwargs):
        calls.append(1)
        raise _client_error("Throttling", 400)

    with pytest.raises(DnsTargetError) as info:
        target._call("example.com", "ChangeResourceRecordSets", method)
    assert len(calls) == 3 and len(sleeps) == 2
    assert "Throttling" in str(info.value) and "3 attempts" in str(info.value)
    assert all(0 < s <= route53.Route53Target.backoff_cap for s in sleeps)


def test_other_errors_are_not_retried() -> None:
    target = Route53Target("aws")
    target._sleep = lambda s: pytest.fail("must not sleep")
    calls = []

    def method(**kwargs):
        calls.append(1)
        raise _client_error("InvalidChangeBatch", 400)

    with pytest.raises(DnsTargetError, match="InvalidChangeBatch: InvalidChangeBatch happened"):
        target._call("example.com", "ChangeResourceRecordSets", method)
    assert len(calls) == 1
