"""Withdrawn records stay published for `retain`, then go (invariant 2)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from keys.retention import has_expired, plan_zone_step

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)
DAY = 86400


def rec(name: str, value: str = "v=DKIM1; p=AAAA", retain: int = 7 * DAY) -> dict:
    return {"name": name, "value": value, "ttl": 3600, "retain": retain}


def test_removed_record_is_kept_until_retain_expires():
    a, b = rec("a._domainkey.x.test"), rec("b._domainkey.x.test")
    step = plan_zone_step([a, b], [], [a], NOW)
    assert step.add == () and step.remove == ()
    assert [r["name"] for r in step.retiring] == [b["name"]]
    assert step.retiring[0]["until"] == "2026-12-10T12:00:00Z"
    assert not has_expired(list(step.retiring), NOW + timedelta(days=6, hours=23))
    assert has_expired(list(step.retiring), NOW + timedelta(days=7))
    later = plan_zone_step([a], list(step.retiring), [a], NOW + timedelta(days=7))
    assert later.remove == (step.retiring[0],) and later.retiring == () and later.add == ()


def test_zero_retain_withdraws_at_once_and_new_records_are_added():
    old, new = rec("old._domainkey.x.test", retain=0), rec("new._domainkey.x.test")
    step = plan_zone_step([old], [], [new], NOW)
    assert step.add == (new,) and step.remove == (old,) and step.retiring == ()


def test_a_retiring_record_wanted_again_is_neither_added_nor_removed():
    a = rec("a._domainkey.x.test")
    retiring = [{**a, "until": "2026-12-01T00:00:00Z"}]  # already expired
    step = plan_zone_step([], retiring, [a], NOW)
    assert step.add == () and step.remove == () and step.retiring == ()


def test_nothing_due_means_no_change():
    a = rec("a._domainkey.x.test")
    retiring = [{**rec("b._domainkey.x.test"), "until": "2026-12-09T00:00:00Z"}]
    step = plan_zone_step([a], retiring, [a], NOW)
    assert step.add == () and step.remove == () and list(step.retiring) == retiring


def test_a_value_replaced_at_the_same_name_leaves_at_once():
    full, empty = rec("a._domainkey.x.test", "v=DKIM1; p=AAAA"), rec("a._domainkey.x.test", "v=DKIM1; p=")
    step = plan_zone_step([full], [], [empty], NOW)
    assert step.add == (empty,) and step.remove == (full,) and step.retiring == ()


def test_rotation_withdrawals_skip_the_second_retain_period():
    a, b = rec("a._domainkey.x.test"), rec("b._domainkey.x.test")
    step = plan_zone_step([a, b], [], [a], NOW, withdraw=frozenset({b["name"]}))
    assert step.remove == (b,) and step.retiring == ()
