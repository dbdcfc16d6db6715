"""dkimroll.report on handmade ledgers, records and config: rows, warnings, rendering, and the
check logic against in-memory readers (no DNS, no engine)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from dkimroll import report
from dkimroll.commands import _unwrap, private_keys, raw_config
from dkimroll.config import parse_stack_config
from keys import clock, keygen
from keys import record as dkim_record

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)


def iso(when: datetime) -> str:
    return clock.iso(when)


def make_config(**domain_extra) -> object:
    return parse_stack_config({
        "dns": {"lab": {"type": "bind-file", "zone_dir": "zones", "nameservers": ["127.0.0.1:5300"]},
                "files": {"type": "bind-file", "zone_dir": "zones"}},
        "signers": {"mta1": {"transport": "local", "root": "s1"}, "mta2": {"transport": "local", "root": "s2"}},
        "domains": {
            "alpha.test": {"dns": "lab", "signers": ["mta1", "mta2"], "algorithm": "rsa-2048",
                           "rotation": {"every": "90d", "publish_ahead": "2d"}, **domain_extra},
            "weak.test": {"dns": "files", "signers": ["mta1"], "algorithm": "rsa-1024"},
            "stage.test": {"dns": "lab", "signers": ["mta1"], "algorithm": "ed25519", "testing": "staged"},
            "try.test": {"dns": "lab", "signers": ["mta1"], "algorithm": "rsa-2048", "testing": True},
        },
    })


def value(k: str = "rsa", p: str = "AAAA", testing: bool = False) -> str:
    return dkim_record.build(dkim_record.DkimRecord(k=k, p=p, t=("y",) if testing else ()))


def slot(domain: str, algorithm: str, keys: list[dict], signers=("mta1",), zone=None, target="lab") -> dict:
    return {"domain": domain, "slot": "shared", "key_type": algorithm.split("-")[0], "algorithm": algorithm,
            "signers": list(signers), "zone": zone or domain, "target": target, "keys": keys}


def record(domain: str, selector: str, val: str, target: str = "lab") -> dict:
    name = f"{selector}._domainkey.{domain}"
    return {"target": target, "zone": domain, "name": name, "ttl": 3600, "value": val,
            "presentation": f'"{val}"', "zone_file": f"{name}. 3600 IN TXT \"{val}\""}


def handmade() -> tuple[dict, list[dict], list[list[str]]]:
    ledger = {
        "alpha.test/shared/rsa": slot("alpha.test", "rsa-2048", [
            {"selector": "old", "published": iso(NOW - 200 * DAY), "activated": iso(NOW - 198 * DAY),
             "retired": iso(NOW - 3 * DAY), "reason": "first", "algorithm": "rsa-2048"},
            {"selector": "cur", "published": iso(NOW - 5 * DAY), "activated": iso(NOW - 3 * DAY),
             "reason": "schedule", "algorithm": "rsa-2048"},
        ], signers=("mta1", "mta2")),
        "weak.test/shared/rsa": slot("weak.test", "rsa-1024", [
            {"selector": "w1", "published": iso(NOW - 400 * DAY), "activated": iso(NOW - 400 * DAY),
             "reason": "first", "algorithm": "rsa-1024"},
        ], target="files"),
        "stage.test/shared/ed25519": slot("stage.test", "ed25519", [
            {"selector": "st", "published": iso(NOW - 4 * DAY), "reason": "first", "algorithm": "ed25519"},
        ]),
        "try.test/shared/rsa": slot("try.test", "rsa-2048", [
            {"selector": "t1", "published": iso(NOW - 12 * DAY), "activated": iso(NOW - 12 * DAY),
             "reason": "first", "algorithm": "rsa-2048"},
        ]),
    }
    records = [
        record("alpha.test", "old", value(p="OLDK")),
        record("alpha.test", "cur", value(p="CURK")),
        record("weak.test", "w1", value(p="WEAK"), target="files"),
        record("stage.test", "st", value(k="ed25519", p="EDKY", testing=True)),
        record("try.test", "t1", value(p="TRYK", testing=True)),
    ]
    verification = [["alpha.test", "nameservers"], ["try.test", "nameservers"], ["weak.test", "backend"]]
    return ledger, records, verification


def rows_by_selector(**kwargs) -> dict[str, report.StatusRow]:
    ledger, records, verification = handmade()
    rows = report.status_rows(make_config(), ledger, records, verification, NOW, **kwargs)
    return {row.selector: row for row in rows}


# --- rows ---------------------------------------------------------------------


def test_one_row_per_key_with_phase_age_bits_and_signers_of_the_active_key():
    rows = rows_by_selector()
    assert set(rows) == {"old", "cur", "w1", "st", "t1"}
    cur, old = rows["cur"], rows["old"]
    assert (cur.domain, cur.phase, cur.algorithm, cur.bits) == ("alpha.test", "active", "rsa-2048", 2048)
    assert cur.age == 5 * DAY
    assert cur.signers == ["mta1", "mta2"]
    assert old.phase == "retired" and old.signers == []
    assert rows["st"].bits == 256 and rows["st"].phase == "published"
    assert cur.name == "cur._domainkey.alpha.test" and cur.slot == "alpha.test/shared/rsa"


def test_next_event_follows_the_rotation_policy():
    rows = rows_by_selector()
    assert (rows["cur"].next_event, rows["cur"].next_at) == ("rotate", NOW - 3 * DAY + 90 * DAY)
    assert (rows["old"].next_event, rows["old"].next_at) == ("revoke", NOW - 3 * DAY + 7 * DAY)
    assert rows["t1"].next_event == "rotate"


def test_healthy_keys_have_no_warnings():
    rows = rows_by_selector(dns_values={"cur._domainkey.alpha.test": [value(p="CURK")]})
    assert rows["cur"].warnings == []
    assert rows["old"].warnings == []


def test_weak_key_and_overdue_rotation_are_warned():
    w1 = rows_by_selector()["w1"]
    assert report.WEAK in w1.warnings
    assert any(w.startswith(report.OVERDUE) for w in w1.warnings)


def test_rotation_is_not_overdue_within_a_day_of_grace():
    ledger, records, verification = handmade()
    config = make_config()
    activated = NOW - 90 * DAY - 2 * DAY  # due 2 days ago: publish_ahead (2d) has just passed
    ledger["alpha.test/shared/rsa"]["keys"][1].update(published=iso(activated), activated=iso(activated))
    rows = {r.selector: r for r in report.status_rows(config, ledger, records, verification, NOW)}
    assert not any(w.startswith(report.OVERDUE) for w in rows["cur"].warnings)
    later = NOW + DAY + timedelta(minutes=1)
    rows = {r.selector: r for r in report.status_rows(config, ledger, records, verification, later)}
    assert any(w.startswith(report.OVERDUE) for w in rows["cur"].warnings)


def test_staged_t_y_is_warned_and_says_staged_but_testing_true_is_not():
    rows = rows_by_selector()
    staged = [w for w in rows["st"].warnings if w.startswith(report.TESTING)]
    assert len(staged) == 1 and "staged" in staged[0]
    assert not any(w.startswith(report.TESTING) for w in rows["t1"].warnings)


def test_t_y_without_testing_mode_is_warned_as_such():
    ledger, records, verification = handmade()
    config = parse_stack_config({
        "dns": {"lab": {"type": "bind-file", "zone_dir": "z", "nameservers": ["127.0.0.1:5300"]}},
        "domains": {"try.test": {"dns": "lab"}},
    })
    rows = report.status_rows(config, {"try.test/shared/rsa": ledger["try.test/shared/rsa"]}, records,
                              verification, NOW)
    assert [w for w in rows[0].warnings if w.startswith(report.TESTING)] == [
        "t=y still on (the domain is not in testing mode: run up to publish without it)"]


def test_published_key_past_publish_ahead_is_not_yet_served():
    ledger, records, verification = handmade()
    # st is the first key of its slot: activation is due at once, so still "published" means not served.
    assert any(w.startswith(report.NOT_SERVED) for w in rows_by_selector()["st"].warnings)
    ledger["alpha.test/shared/rsa"]["keys"].append(
        {"selector": "nxt", "published": iso(NOW - DAY), "reason": "schedule", "algorithm": "rsa-2048"})
    rows = {r.selector: r for r in report.status_rows(make_config(), ledger, records, verification, NOW)}
    assert not any(w.startswith(report.NOT_SERVED) for w in rows["nxt"].warnings)  # within publish_ahead
    rows = {r.selector: r for r in report.status_rows(make_config(), ledger, records, verification,
                                                       NOW + 2 * DAY)}
    assert any(w.startswith(report.NOT_SERVED) for w in rows["nxt"].warnings)


def test_dns_differs_only_when_values_were_looked_up_and_miss_the_expected_one():
    rows = rows_by_selector(dns_values={"cur._domainkey.alpha.test": [value(p="OTHR")],
                                        "old._domainkey.alpha.test": [value(p="OLDK"), "v=spf1 -all"]})
    assert any(w.startswith(report.DIFFERS) for w in rows["cur"].warnings)
    assert not any(w.startswith(report.DIFFERS) for w in rows["old"].warnings)
    assert not any(w.startswith(report.DIFFERS) for w in rows["t1"].warnings)  # not looked up
    rows = rows_by_selector(dns_values={"cur._domainkey.alpha.test": []})
    assert f"{report.DIFFERS} (no TXT record served)" in rows["cur"].warnings


def test_a_failed_lookup_is_a_warning():
    rows = rows_by_selector(dns_values={}, dns_errors={"cur._domainkey.alpha.test": "127.0.0.1:5300 did not answer"})
    assert rows["cur"].warnings == [f"{report.LOOKUP_FAILED}: 127.0.0.1:5300 did not answer"]


# --- rendering ------------------------------------------------------------------


def test_table_is_aligned_with_ages_dates_and_a_backend_footnote():
    ledger, records, verification = handmade()
    rows = report.status_rows(make_config(), ledger, records, verification, NOW)
    text = report.render_table(rows)
    lines = text.splitlines()
    header = lines[0]
    assert header.split() == ["DOMAIN", "SELECTOR", "ALG", "PHASE", "AGE", "SIGNERS", "NEXT", "WARNINGS"]
    cur = next(line for line in lines if " cur " in line)
    # Columns line up: each header starts where its values start.
    for column, cell in (("SELECTOR", "cur"), ("PHASE", "active"), ("AGE", "5d"), ("SIGNERS", "mta1,mta2")):
        assert cur.index(cell) == header.index(column), column
    assert f"rotate {(NOW + 87 * DAY):%Y-%m-%d}" in cur
    assert "weak.test: checked through the zone file, not by DNS queries (proves less)" in lines
    assert not any(line.startswith("alpha.test:") for line in lines)
    assert lines[-1] == "5 key(s), 2 with warnings"


def test_ages_use_the_largest_whole_unit():
    assert report.format_age(timedelta(days=12, hours=5)) == "12d"
    assert report.format_age(timedelta(hours=5, minutes=3)) == "5h"
    assert report.format_age(timedelta(minutes=7)) == "7m"


def test_empty_stack_renders_a_hint():
    assert "run `dkimroll up`" in report.render_table([])


def test_status_json_is_serialisable_and_complete():
    ledger, records, verification = handmade()
    rows = report.status_rows(make_config(), ledger, records, verification, NOW)
    data = json.loads(json.dumps(report.status_json(rows)))
    assert len(data) == 5
    cur = next(item for item in data if item["selector"] == "cur")
    assert cur["next_at"] == iso(NOW + 87 * DAY) and cur["age_seconds"] == 5 * 86400
    assert cur["signers"] == ["mta1", "mta2"] and cur["phase"] == "active" and cur["bits"] == 2048
    assert next(i for i in data if i["selector"] == "w1")["verified_via"] == "backend"


# --- check against in-memory readers --------------------------------------------


class DictReader:
    """Two 'nameservers' answering from dicts."""

    via = "nameservers"

    def __init__(self, answers: dict[str, dict[str, list[str]]], down: set[str] = frozenset()) -> None:
        self.answers = answers
        self.down = down

    def sources(self) -> list[str]:
        return list(self.answers)

    def values(self, source, name, expected):
        if source in self.down:
            raise report.LookupFailed(f"{source} did not answer (Timeout)")
        return list(self.answers[source].get(name, []))


@pytest.fixture(scope="module")
def keys_and_records():
    rsa_key = keygen.generate(keygen.parse_algorithm("rsa-2048"))
    ed_key = keygen.generate(keygen.parse_algorithm("ed25519"))
    ledger = {
        "ok.test/shared/rsa": slot("ok.test", "rsa-2048", [
            {"selector": "r1", "published": iso(NOW - DAY), "activated": iso(NOW - DAY), "reason": "first",
             "algorithm": "rsa-2048"}]),
        "ok.test/shared/ed25519": slot("ok.test", "ed25519", [
            {"selector": "e1", "published": iso(NOW - DAY), "activated": iso(NOW - DAY), "reason": "first",
             "algorithm": "ed25519"}]),
    }
    records = [record("ok.test", "r1", value(p=keygen.public_p_value(rsa_key))),
               record("ok.test", "e1", value(k="ed25519", p=keygen.public_p_value(ed_key)))]
    pems = {("ok.test", "r1"): rsa_key.pem, ("ok.test", "e1"): ed_key.pem}
    return ledger, records, pems


def serving(records, **overrides) -> dict[str, list[str]]:
    served = {r["name"]: [r["value"]] for r in records}
    served.update(overrides)
    return served


def test_check_passes_when_every_server_serves_the_keys_and_signatures_verify(keys_and_records):
    ledger, records, pems = keys_and_records
    reader = DictReader({"ns1:53": serving(records), "ns2:53": serving(records)})
    result = report.check(ledger, records, pems, lambda target, zone: reader, NOW)
    assert result.ok, report.render_check(result)
    kinds = sorted((item.kind, item.selector) for item in result.items)
    assert kinds == [("dns", "e1"), ("dns", "r1"), ("signature", "e1"), ("signature", "r1")]
    sig = next(i for i in result.items if i.kind == "signature" and i.selector == "e1")
    assert "ed25519-sha256" in sig.detail
    text = report.render_check(result)
    assert text.splitlines()[-1].startswith("check: 4 ok, 0 failed")
    for pem in pems.values():
        assert pem not in text and pem.splitlines()[1] not in text


def test_check_names_the_record_and_the_server_that_differs(keys_and_records):
    ledger, records, pems = keys_and_records
    stranger = keygen.generate(keygen.parse_algorithm("rsa-2048"))
    bad = {"r1._domainkey.ok.test": [value(p=keygen.public_p_value(stranger))]}
    reader = DictReader({"ns1:53": serving(records), "ns2:53": serving(records, **bad)})
    result = report.check(ledger, records, pems, lambda target, zone: reader, NOW)
    assert not result.ok
    failed = {(i.kind, i.name) for i in result.failures}
    assert failed == {("dns", "r1._domainkey.ok.test"), ("signature", "r1._domainkey.ok.test")}
    text = report.render_check(result)
    line = next(l for l in text.splitlines() if l.startswith("FAIL") and "dns" in l)
    assert "r1._domainkey.ok.test" in line and "ns2:53 serves a different value" in line
    sig = next(i for i in result.failures if i.kind == "signature")
    assert "ns2:53" in sig.detail and "ns1:53" not in sig.detail


def test_check_reports_an_unreachable_server_and_a_missing_private_key(keys_and_records):
    ledger, records, pems = keys_and_records
    reader = DictReader({"ns1:53": serving(records), "ns2:53": serving(records)}, down={"ns2:53"})
    result = report.check(ledger, records, {("ok.test", "r1"): pems[("ok.test", "r1")]},
                          lambda target, zone: reader, NOW)
    details = {(i.kind, i.selector): i.detail for i in result.failures}
    assert "ns2:53 did not answer" in details[("dns", "r1")]
    assert details[("signature", "e1")] == "no private key for this selector in the stack's state"


def test_check_of_nothing_fails():
    result = report.check({}, [], {}, lambda target, zone: DictReader({}), NOW)
    assert not result.ok
    assert "nothing to check" in report.render_check(result)


def test_backend_reader_items_say_they_prove_less(tmp_path, keys_and_records):
    ledger, records, pems = keys_and_records
    from providers.dns.bindfile import BindFileTarget
    from providers.dns.base import TxtRecord

    target = BindFileTarget("files", tmp_path, create=True, check_command=None)
    target.apply("ok.test", [TxtRecord(r["name"], r["value"]) for r in records], [])
    reader = report.open_reader("files", {"type": "bind-file", "zone_dir": str(tmp_path), "create": True,
                                          "check_command": None}, "ok.test")
    assert reader.via == "backend"
    result = report.check(ledger, records, pems, lambda target, zone: reader, NOW)
    assert result.ok, report.render_check(result)
    text = report.render_check(result)
    assert "proves less" in text and "ok.test" in text.splitlines()[-2]


# --- reading the stack ------------------------------------------------------------


def test_raw_config_decodes_object_values():
    class Value:
        def __init__(self, value):
            self.value = value

    raw = raw_config({"dkimroll:dns": Value(json.dumps({"lab": {"type": "manual"}})),
                      "dkimroll:domains": Value(json.dumps({"a.test": {"dns": "lab"}})),
                      "aws:region": Value("eu-west-1")})
    assert raw == {"dns": {"lab": {"type": "manual"}}, "domains": {"a.test": {"dns": "lab"}}}
    assert parse_stack_config(raw).domains["a.test"].dns == "lab"


def test_private_keys_from_exported_state_handle_secret_wrappers():
    sig = "4dabf18193072939515e22adb298388d"
    deployment = {"resources": [
        {"type": "pulumi-python:dynamic/dkimroll:KeyRing",
         "outputs": {"domain": "a.test", "private_keys": {sig: "1b47061264138c4ac30d75fd1eb44270",
                                                          "value": {"s1": "PEM-1"}}}},
        {"type": "pulumi-python:dynamic/dkimroll:KeyRing",
         "outputs": {"domain": "b.test", "private_keys": {sig: "1b47061264138c4ac30d75fd1eb44270",
                                                          "plaintext": json.dumps({"s2": "PEM-2"})}}},
        {"type": "pulumi-python:dynamic/dkimroll:KeyRing",
         "outputs": {"domain": "c.test", "private_keys": {"s3": {sig: "1b47061264138c4ac30d75fd1eb44270",
                                                                 "value": "PEM-3"}}}},
        {"type": "pulumi-python:dynamic/dkimroll:DnsZone", "outputs": {"domain": "x"}},
    ]}
    assert private_keys(deployment) == {("a.test", "s1"): "PEM-1", ("b.test", "s2"): "PEM-2",
                                        ("c.test", "s3"): "PEM-3"}
    assert _unwrap({sig: "1b47061264138c4ac30d75fd1eb44270", "ciphertext": "xx"}) is None
