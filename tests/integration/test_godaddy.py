"""GoDaddyTarget against the project's own GoDaddy v1 API server on 127.0.0.1.

Time is fake: the target's `sleep`/`clock` are a FakeTime that also advances
the server's rate-limit clock, so 429 windows, retries and pacing are tested
exactly and instantly.
"""

from __future__ import annotations

import logging
import threading

import pytest

from keys import keygen, record
from providers.dns.base import TxtRecord
from providers.dns.godaddy import GoDaddyTarget
from providers.errors import ConfigError, DnsTargetError
from tests.infra.godaddy_server import GoDaddyServer

ZONE = "example.com"
KEY = "gd-key-7f3a9c"
SECRET = "gd-secret-Zq81xW0pLm"
SPF = "v=spf1 include:_spf.example.net -all"
TOKEN = "google-site-verification=abc123"


class FakeTime:
    """sleep() records the wait and moves both clocks; nothing really sleeps."""

    def __init__(self, server: GoDaddyServer | None = None) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.server = server

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.server is not None:
            self.server.advance(seconds)

    def clock(self) -> float:
        return self.now


def _dkim(algorithm: str) -> str:
    private = keygen.generate(keygen.parse_algorithm(algorithm))
    key_type = "ed25519" if algorithm == "ed25519" else "rsa"
    return record.build(record.DkimRecord(k=key_type, p=keygen.public_p_value(private)))


@pytest.fixture(scope="module")
def values() -> dict[str, str]:
    return {
        "rsa": _dkim("rsa-2048"),
        "rsa2": _dkim("rsa-2048"),
        "ed": _dkim("ed25519"),
        "rsa4096": _dkim("rsa-4096"),
        "rsa3072": _dkim("rsa-3072"),
    }


@pytest.fixture(autouse=True)
def no_leftover_threads():
    before = set(threading.enumerate())
    yield
    assert set(threading.enumerate()) - before == set()


@pytest.fixture
def server():
    with GoDaddyServer(domains=[ZONE, "other.org"], api_key=KEY, api_secret=SECRET) as srv:
        yield srv


@pytest.fixture
def fake(server) -> FakeTime:
    return FakeTime(server)


def _target(server: GoDaddyServer, fake: FakeTime, **kwargs) -> GoDaddyTarget:
    kwargs.setdefault("api_key", KEY)
    kwargs.setdefault("api_secret", SECRET)
    kwargs.setdefault("pace_seconds", 0)
    return GoDaddyTarget("gd", base_url=server.base_url, sleep=fake.sleep, clock=fake.clock, **kwargs)


def _rec(name: str, value: str, ttl: int = 3600) -> TxtRecord:
    return TxtRecord(f"{name}.{ZONE}" if name != "@" else ZONE, value, ttl)


def _methods(server: GoDaddyServer) -> list[str]:
    return [r.method for r in server.log]


# --- create, update, delete ----------------------------------------------------


def test_create_update_delete(server, fake, values) -> None:
    target = _target(server, fake)
    old = _rec("s202601._domainkey", values["rsa"])
    new = _rec("s202607._domainkey", values["rsa2"])
    ed = _rec("e202601._domainkey", values["ed"], 600)

    assert target.check(ZONE, [old, ed]) == []
    assert target.present(ZONE, [old, ed]) == []
    assert target.apply(ZONE, [old, ed], []) is True
    assert server.txt(ZONE, "s202601._domainkey") == [values["rsa"]]
    assert server.txt(ZONE, "e202601._domainkey") == [values["ed"]]
    assert {(r["name"], r["ttl"]) for r in server.records(ZONE)} == {
        ("s202601._domainkey", 3600),
        ("e202601._domainkey", 600),
    }
    assert target.present(ZONE, [old, ed, new]) == [old, ed]

    # the raw joined value went over the wire: no quotes, no 255-octet chunks
    puts = [r for r in server.log if r.method == "PUT"]
    assert {p.body[0]["data"] for p in puts} == {values["rsa"], values["ed"]}
    assert all(set(p.body[0]) == {"data", "ttl"} for p in puts)

    # rotation: publish the new selector, withdraw the old one
    server.clear_log()
    assert target.apply(ZONE, [new], [old]) is True
    assert server.txt(ZONE, "s202607._domainkey") == [values["rsa2"]]
    assert server.txt(ZONE, "s202601._domainkey") == []
    writes = server.writes()
    assert [w.method for w in writes] == ["PUT", "DELETE"]  # the addition is written first
    assert target.present(ZONE, [old, new, ed]) == [new, ed]

    # a new value at an existing name replaces only that value
    server.clear_log()
    assert target.apply(ZONE, [_rec("e202601._domainkey", values["rsa"], 600)], [ed]) is True
    assert server.txt(ZONE, "e202601._domainkey") == [values["rsa"]]
    assert [w.method for w in server.writes()] == ["PUT"]


def test_ttl_change_of_our_value_is_written(server, fake, values) -> None:
    target = _target(server, fake)
    assert target.apply(ZONE, [_rec("sel._domainkey", values["ed"], 3600)], []) is True
    assert target.apply(ZONE, [_rec("sel._domainkey", values["ed"], 7200)], []) is True
    assert [(r["data"], r["ttl"]) for r in server.records(ZONE)] == [(values["ed"], 7200)]


def test_apex_name(server, fake, values) -> None:
    target = _target(server, fake)
    server.seed(ZONE, "@", SPF)
    apex = TxtRecord(ZONE, values["ed"], 600)
    assert target.apply(ZONE, [apex], []) is True
    assert server.txt(ZONE, "@") == [SPF, values["ed"]]
    assert any(r.path.endswith("/records/TXT/@") for r in server.log)
    assert target.present(ZONE, [apex]) == [apex]


def test_zone_and_names_are_normalised(server, fake, values) -> None:
    target = _target(server, fake)
    rec = TxtRecord("SEL._DomainKey.Example.COM.", values["ed"], 600)
    assert target.apply("Example.COM.", [rec], []) is True
    assert server.txt(ZONE, "sel._domainkey") == [values["ed"]]
    assert target.present(ZONE, [rec]) == [rec]


# --- other values at the same name survive -------------------------------------------


def test_foreign_values_survive_add_and_remove(server, fake, values) -> None:
    target = _target(server, fake)
    name = "sel._domainkey"
    server.seed(ZONE, name, SPF, 1800)
    server.seed(ZONE, name, TOKEN, 600)
    server.seed(ZONE, "mail", "v=spf1 mx -all", 3600)
    dkim = _rec(name, values["rsa"])

    assert target.apply(ZONE, [dkim], []) is True
    assert server.txt(ZONE, name) == [SPF, TOKEN, values["rsa"]]
    put = [r for r in server.log if r.method == "PUT"][0]
    assert put.body == [
        {"data": SPF, "ttl": 1800},
        {"data": TOKEN, "ttl": 600},
        {"data": values["rsa"], "ttl": 3600},
    ]

    assert target.apply(ZONE, [], [dkim]) is True
    assert server.txt(ZONE, name) == [SPF, TOKEN]
    assert sorted((r["data"], r["ttl"]) for r in server.records(ZONE) if r["name"] == name) == [
        (TOKEN, 600),
        (SPF, 1800),
    ]
    assert server.txt(ZONE, "mail") == ["v=spf1 mx -all"]
    assert "DELETE" not in _methods(server)  # values remained: PUT, never DELETE


def test_delete_when_ours_was_the_last_value(server, fake, values) -> None:
    target = _target(server, fake)
    dkim = _rec("sel._domainkey", values["rsa"])
    assert target.apply(ZONE, [dkim], []) is True
    server.clear_log()
    assert target.apply(ZONE, [], [dkim]) is True
    assert [(r.method, r.status) for r in server.log] == [("GET", 200), ("DELETE", 204)]
    assert server.records(ZONE) == []


def test_remove_of_a_value_not_there_writes_nothing(server, fake, values) -> None:
    target = _target(server, fake)
    server.seed(ZONE, "sel._domainkey", SPF)
    assert target.apply(ZONE, [], [_rec("sel._domainkey", values["rsa"]), _rec("gone._domainkey", values["ed"])]) is False
    assert server.writes() == []
    assert server.txt(ZONE, "sel._domainkey") == [SPF]


def test_deleted_by_someone_else_between_get_and_delete(server, fake, values) -> None:
    """DELETE answering 404 NOT_FOUND means the value is gone already: that is success."""
    target = _target(server, fake)
    dkim = _rec("sel._domainkey", values["rsa"])
    assert target.apply(ZONE, [dkim], []) is True
    server.fail_next(404, {"code": "NOT_FOUND", "message": "Not found"}, method="DELETE")
    assert target.apply(ZONE, [], [dkim]) is True
    assert [(r.method, r.status) for r in server.log][-2:] == [("GET", 200), ("DELETE", 404)]


def test_get_404_is_never_taken_for_no_records(server, fake, values) -> None:
    target = _target(server, fake)
    dkim = _rec("sel._domainkey", values["rsa"])
    assert target.apply(ZONE, [dkim], []) is True
    server.fail_next(404, {"code": "NOT_FOUND", "message": "Not found"}, method="GET")
    with pytest.raises(DnsTargetError, match="404 NOT_FOUND"):
        target.apply(ZONE, [], [dkim])
    assert server.txt(ZONE, "sel._domainkey") == [values["rsa"]]
    assert [w.method for w in server.writes()] == ["PUT"]


def test_reapply_makes_no_write_calls(server, fake, values) -> None:
    target = _target(server, fake)
    server.seed(ZONE, "a._domainkey", SPF)
    wanted = [_rec("a._domainkey", values["rsa"]), _rec("b._domainkey", values["ed"], 900)]
    assert target.apply(ZONE, wanted, []) is True
    server.clear_log()
    assert target.apply(ZONE, wanted, []) is False
    assert target.apply(ZONE, wanted, [_rec("c._domainkey", values["rsa2"])]) is False
    assert server.writes() == []
    assert set(_methods(server)) == {"GET"}
    assert target.present(ZONE, wanted) == wanted


# --- limits found at check, before any request -------------------------------------------


@pytest.mark.parametrize("algorithm", ["rsa4096", "rsa3072"])
def test_large_rsa_key_rejected_at_check_without_request(server, fake, values, algorithm) -> None:
    target = _target(server, fake)
    big = _rec("big._domainkey", values[algorithm])
    assert len(big.value) > 512
    problems = target.check(ZONE, [big])
    assert len(problems) == 1
    text = problems[0]
    assert "big._domainkey.example.com" in text
    assert f"{len(big.value)} characters" in text and "512" in text
    assert "4096-bit RSA key does not fit" in text
    assert "rsa-2048" in text and "ed25519" in text
    assert "_domainkey zone to another DNS target" in text
    assert server.log == []
    with pytest.raises(DnsTargetError, match="nothing written.*4096-bit RSA key does not fit"):
        target.apply(ZONE, [big], [])
    assert server.log == []


def test_rsa2048_fits(values) -> None:
    assert len(values["rsa"]) <= 512


def test_low_ttl_rejected_at_check_without_request(server, fake, values) -> None:
    target = _target(server, fake)
    problems = target.check(ZONE, [_rec("sel._domainkey", values["ed"], 300)])
    assert problems == [
        "record sel._domainkey.example.com: TTL 300 is too low: GoDaddy requires TTL ≥ 600; set ttl: 600 or more"
    ]
    assert server.log == []
    with pytest.raises(DnsTargetError, match="TTL ≥ 600"):
        target.apply(ZONE, [_rec("sel._domainkey", values["ed"], 300)], [])
    assert server.log == []


def test_name_outside_zone_rejected_by_labels(server, fake, values) -> None:
    target = _target(server, fake)
    problems = target.check(ZONE, [TxtRecord("sel._domainkey.notexample.com", values["ed"], 600)])
    assert problems == ["record sel._domainkey.notexample.com is not within zone example.com"]
    assert server.log == []


def test_missing_credentials(server, fake, values, monkeypatch) -> None:
    monkeypatch.delenv("GODADDY_API_KEY", raising=False)
    monkeypatch.delenv("GODADDY_API_SECRET", raising=False)
    target = _target(server, fake, api_key=None, api_secret=None)
    rec = _rec("sel._domainkey", values["ed"], 600)
    assert target.check(ZONE, [rec]) == [
        "no GoDaddy API credentials: set api_key/api_secret as stack secrets or GODADDY_API_KEY/GODADDY_API_SECRET"
    ]
    with pytest.raises(DnsTargetError, match="no GoDaddy API credentials"):
        target.apply(ZONE, [rec], [])
    with pytest.raises(DnsTargetError, match="no GoDaddy API credentials"):
        target.present(ZONE, [rec])
    assert server.log == []


def test_credentials_from_environment(server, fake, values, monkeypatch) -> None:
    monkeypatch.setenv("GODADDY_API_KEY", KEY)
    monkeypatch.setenv("GODADDY_API_SECRET", SECRET)
    target = _target(server, fake, api_key=None, api_secret=None)
    assert target.check(ZONE, [_rec("sel._domainkey", values["ed"], 600)]) == []
    assert SECRET not in repr(target) and KEY not in repr(target)


def test_check_does_one_get_and_reports_unknown_domain(server, fake, values) -> None:
    target = _target(server, fake)
    rec = TxtRecord("sel._domainkey.unknown.net", values["ed"], 600)
    problems = target.check("unknown.net", [rec])
    assert len(problems) == 1
    assert "does not know domain unknown.net" in problems[0]
    assert "404 UNKNOWN_DOMAIN" in problems[0]
    assert [(r.method, r.path) for r in server.log] == [("GET", "/v1/domains/unknown.net/records/TXT/sel._domainkey")]


def test_bad_constructor_arguments() -> None:
    with pytest.raises(ConfigError, match=r"dkimroll:dns\.gd\.environment"):
        GoDaddyTarget("gd", "k", "s", environment="staging")
    with pytest.raises(ConfigError, match=r"dkimroll:dns\.gd\.pace_seconds"):
        GoDaddyTarget("gd", "k", "s", pace_seconds=-1)
    with pytest.raises(ConfigError, match=r"dkimroll:dns\.gd\.base_url"):
        GoDaddyTarget("gd", "k", "s", base_url="ftp://x")
    assert GoDaddyTarget("gd", "k", "s").base_url == "https://api.godaddy.com"
    assert GoDaddyTarget("gd", "k", "s", environment="OTE").base_url == "https://api.ote-godaddy.com"


# --- rate limits, retries, pacing ----------------------------------------------------------


def test_429_retry_after_sec_is_honoured_and_converges(values) -> None:
    with GoDaddyServer(domains=[ZONE], api_key=KEY, api_secret=SECRET, budget=2, window_seconds=45) as server:
        fake = FakeTime(server)
        target = _target(server, fake)
        wanted = [_rec(f"s{i}._domainkey", values["ed"], 600) for i in range(4)]
        assert target.apply(ZONE, wanted, []) is True  # 8 requests through a budget of 2 per 45 s
        for i in range(4):
            assert server.txt(ZONE, f"s{i}._domainkey") == [values["ed"]]
        throttled = [r for r in server.log if r.status == 429]
        assert throttled
        assert fake.sleeps == [45] * len(throttled)  # exactly what retryAfterSec said
        assert target.apply(ZONE, wanted, []) is False


def test_429_retry_after_header_is_honoured(values) -> None:
    with GoDaddyServer(
        domains=[ZONE], api_key=KEY, api_secret=SECRET, budget=1, window_seconds=20,
        retry_after_in_body=False, retry_after_header=True,
    ) as server:
        fake = FakeTime(server)
        target = _target(server, fake)
        assert target.apply(ZONE, [_rec("sel._domainkey", values["ed"], 600)], []) is True
        assert fake.sleeps == [20]
        assert server.txt(ZONE, "sel._domainkey") == [values["ed"]]


def test_429_gives_up_after_max_retries(values) -> None:
    with GoDaddyServer(domains=[ZONE], api_key=KEY, api_secret=SECRET, budget=0, window_seconds=30) as server:
        fake = FakeTime(server)
        target = _target(server, fake, max_retries=3)
        with pytest.raises(DnsTargetError) as info:
            target.apply(ZONE, [_rec("sel._domainkey", values["ed"], 600)], [])
        message = str(info.value)
        assert "429 TOO_MANY_REQUESTS" in message and "after 3 retries" in message
        assert "record sel._domainkey.example.com" in message
        assert fake.sleeps == [30, 30, 30]
        assert len(server.log) == 4


def test_transient_409_after_write_is_retried(values) -> None:
    with GoDaddyServer(domains=[ZONE], api_key=KEY, api_secret=SECRET, conflicts_after_write=2) as server:
        fake = FakeTime(server)
        target = _target(server, fake)
        wanted = [_rec("a._domainkey", values["ed"], 600), _rec("b._domainkey", values["rsa"])]
        assert target.apply(ZONE, wanted, []) is True
        assert server.txt(ZONE, "a._domainkey") == [values["ed"]]
        assert server.txt(ZONE, "b._domainkey") == [values["rsa"]]
        conflicts = [r for r in server.log if r.status == 409]
        assert len(conflicts) == 2
        assert fake.sleeps == [1.0, 2.0]  # exponential backoff


def test_5xx_and_transient_422_are_retried_but_validation_422_is_not(server, fake, values) -> None:
    target = _target(server, fake)
    server.fail_next(503, {"code": "SERVICE_UNAVAILABLE", "message": "try later"})
    server.fail_next(500, {"code": "INTERNAL_SERVER_ERROR", "message": "oops"})
    server.fail_next(422, {"code": "DUPLICATE_RECORD", "message": "Another record change is in progress"})
    assert target.apply(ZONE, [_rec("sel._domainkey", values["ed"], 600)], []) is True
    assert fake.sleeps == [1.0, 2.0, 4.0]

    fake.sleeps.clear()
    server.fail_next(
        422,
        {
            "code": "INVALID_BODY",
            "message": "Request body doesn't fulfill schema, see details in `fields`",
            "fields": [{"path": "records[0].ttl", "code": "INVALID_VALUE", "message": "must be >= 600"}],
        },
    )
    with pytest.raises(DnsTargetError) as info:
        target.apply(ZONE, [_rec("sel._domainkey", values["rsa"])], [])
    assert fake.sleeps == []
    message = str(info.value)
    assert "HTTP 422 INVALID_BODY" in message and "records[0].ttl: must be >= 600" in message


def test_server_side_validation_422_names_the_value(server, fake, values) -> None:
    """A foreign value with a TTL GoDaddy now refuses: the message says which one."""
    target = _target(server, fake)
    server.seed(ZONE, "sel._domainkey", SPF, 300)
    with pytest.raises(DnsTargetError) as info:
        target.apply(ZONE, [_rec("sel._domainkey", values["ed"], 600)], [])
    message = str(info.value)
    assert "dns target 'gd', zone example.com, record sel._domainkey.example.com" in message
    assert "HTTP 422 INVALID_BODY" in message
    assert "records[0].ttl is 'v=spf1 include:_spf.example.net -all' (ttl 300)" in message
    assert fake.sleeps == []
    assert server.txt(ZONE, "sel._domainkey") == [SPF]


def test_pacing_sleeps_between_requests(server, values) -> None:
    fake = FakeTime(server)
    target = _target(server, fake, pace_seconds=1.5)
    wanted = [_rec("a._domainkey", values["ed"], 600), _rec("b._domainkey", values["rsa"])]
    assert target.apply(ZONE, wanted, []) is True
    assert len(server.log) == 4
    assert fake.sleeps == [1.5, 1.5, 1.5]  # before every request but the first
    # time already passed counts towards the pause
    fake.now += 1.0
    fake.sleeps.clear()
    assert target.present(ZONE, wanted) == wanted
    assert fake.sleeps == [0.5, 1.5]  # the rest of the pause before the first, a full one before the second


def test_pacing_counts_elapsed_time(server, values) -> None:
    fake = FakeTime(server)
    target = _target(server, fake, pace_seconds=2.0)
    target.present(ZONE, [_rec("a._domainkey", values["ed"], 600)])
    fake.now += 0.5
    target.present(ZONE, [_rec("a._domainkey", values["ed"], 600)])
    assert fake.sleeps == [1.5]


def test_unreachable_server_is_retried_then_reported(values) -> None:
    with GoDaddyServer(domains=[ZONE], api_key=KEY, api_secret=SECRET) as server:
        base_url = server.base_url
    fake = FakeTime()
    target = GoDaddyTarget("gd", KEY, SECRET, base_url=base_url, pace_seconds=0, max_retries=2,
                           timeout=5, sleep=fake.sleep, clock=fake.clock)
    with pytest.raises(DnsTargetError, match="cannot reach the GoDaddy API") as info:
        target.apply(ZONE, [_rec("sel._domainkey", values["ed"], 600)], [])
    assert fake.sleeps == [1.0, 2.0]
    assert SECRET not in str(info.value) and KEY not in str(info.value)


# --- authentication errors, and secrets never leak -------------------------------------------


def test_401_message(server, fake, values) -> None:
    target = _target(server, fake, api_secret="wrong-secret-QQ77")
    rec = _rec("sel._domainkey", values["ed"], 600)
    expected = (
        "GoDaddy rejected the API key (401 UNABLE_TO_AUTHENTICATE): check api_key/api_secret and that they "
        "belong to the environment (OTE and production keys differ)"
    )
    problems = target.check(ZONE, [rec])
    assert len(problems) == 1 and problems[0].startswith(expected)
    with pytest.raises(DnsTargetError) as info:
        target.apply(ZONE, [rec], [])
    assert expected in str(info.value)
    assert "wrong-secret-QQ77" not in str(info.value)
    assert fake.sleeps == []  # 401 is not retried
    assert server.writes() == []


def test_403_access_denied_message(values) -> None:
    with GoDaddyServer(domains=[ZONE], api_key=KEY, api_secret=SECRET, access_denied=True) as server:
        fake = FakeTime(server)
        target = _target(server, fake)
        rec = _rec("sel._domainkey", values["ed"], 600)
        problems = target.check(ZONE, [rec])
        assert len(problems) == 1
        assert "403 ACCESS_DENIED: Authenticated user is not allowed access" in problems[0]
        assert "since 2024" in problems[0] and "10 or more domains" in problems[0]
        assert "Discount Domain Club" in problems[0]
        with pytest.raises(DnsTargetError, match="403 ACCESS_DENIED"):
            target.present(ZONE, [rec])
        assert fake.sleeps == []


def test_secret_never_in_messages_or_logs(server, fake, values, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    messages: list[str] = []
    target = _target(server, fake)
    rec = _rec("sel._domainkey", values["ed"], 600)

    # a server that echoes the credentials in its error message
    server.fail_next(500, {"code": "ERR", "message": f"bad header sso-key {KEY}:{SECRET}"}, count=10)
    with pytest.raises(DnsTargetError) as info:
        target.apply(ZONE, [rec], [])
    messages.append(str(info.value))
    assert "***" in messages[-1]

    for kwargs in ({"api_secret": SECRET + "x"}, {"api_key": KEY + "x"}):
        bad = _target(server, fake, **kwargs)
        messages.extend(bad.check(ZONE, [rec]))
        with pytest.raises(DnsTargetError) as info:
            bad.apply(ZONE, [rec], [])
        messages.append(str(info.value))
    messages.extend(target.check("unknown.net", [TxtRecord("a.unknown.net", "x", 600)]))
    messages.append(repr(target))

    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "retry" in logged  # the retries were logged...
    for text in [*messages, logged]:
        assert SECRET not in text  # ...and nothing ever shows the secret
        assert KEY not in text


def test_other_domain_in_same_account_is_independent(server, fake, values) -> None:
    target = _target(server, fake)
    assert target.apply("other.org", [TxtRecord("sel._domainkey.other.org", values["ed"], 600)], []) is True
    assert server.txt("other.org", "sel._domainkey") == [values["ed"]]
    assert server.txt(ZONE, "sel._domainkey") == []
