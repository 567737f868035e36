"""Fire times (croniter + zoneinfo, DST), templates and catch-up planning: pure functions."""

from __future__ import annotations

from datetime import datetime

import pytest

from nb2prod.errors import UsageError
from nb2prod.scheduling import timing
from nb2prod.scheduling.service import plan_catchup


def test_spring_forward_a_missing_time_fires_once_after_the_gap():
    times = timing.fire_times("30 2 * * *", "America/New_York", datetime(2026, 3, 7, 12), datetime(2026, 3, 9, 12))
    assert times == [datetime(2026, 3, 8, 7, 0), datetime(2026, 3, 9, 6, 30)]  # 03:00 EDT, then 02:30 EDT


def test_fall_back_a_repeated_time_fires_at_both_occurrences():
    times = timing.fire_times("30 1 * * *", "America/New_York", datetime(2026, 10, 31, 12), datetime(2026, 11, 1, 12))
    assert times == [datetime(2026, 11, 1, 5, 30), datetime(2026, 11, 1, 6, 30)]  # 01:30 EDT and 01:30 EST


def test_europe_daily_keeps_local_wall_clock_across_dst():
    times = timing.fire_times("0 9 * * *", "Europe/Paris", datetime(2026, 3, 28), datetime(2026, 3, 30, 12))
    assert times == [datetime(2026, 3, 28, 8), datetime(2026, 3, 29, 7), datetime(2026, 3, 30, 7)]


def test_hourly_across_spring_forward_has_no_duplicates_or_holes_in_utc():
    times = timing.fire_times("@hourly", "America/New_York", datetime(2026, 3, 8, 5), datetime(2026, 3, 8, 9))
    assert times == [datetime(2026, 3, 8, h) for h in (6, 7, 8, 9)]


@pytest.mark.parametrize("expr", ["* * * * *", "*/5 2-4 * * mon-fri", "0 0 1 * *", "@hourly", "@daily", "@weekly"])
def test_valid_cron(expr):
    timing.check_cron(expr, "UTC")


@pytest.mark.parametrize("expr", ["61 * * * *", "* * * *", "* * * * * *", "every day", "@fortnightly", "",
                                  "0 0 30 2 *"])
def test_invalid_cron(expr):
    with pytest.raises(UsageError, match="cron"):
        timing.check_cron(expr, "UTC")


@pytest.mark.parametrize("expr", ["R 2 * * *", "r 2 * * *", "0 R * * *", "H 2 * * *", "H(0-29) 2 * * *",
                                  "0 0 * JAN,R *"])
def test_random_and_hashed_fields_are_refused(expr):
    with pytest.raises(UsageError, match="random .R. and hashed .H. fields are not supported"):
        timing.check_cron(expr, "UTC")
    assert timing.check_cron("0 2 * * THU,SAT", "UTC") is None  # day and month names are no R/H fields


@pytest.mark.parametrize("tz", ["Nowhere/City", "../etc/passwd", ""])
def test_unknown_timezone(tz):
    with pytest.raises(UsageError, match="timezone"):
        timing.check_cron("@daily", tz)


T = datetime(2026, 3, 1, 7, 0)  # UTC


@pytest.mark.parametrize("value,tz,expected", [
    ("{{ scheduled_time - 1d:%Y-%m-%d }}", "UTC", "2026-02-28"),
    ("{{scheduled_time + 2h:%H}}h", "Europe/Paris", "10h"),
    ("{{ scheduled_time }}", "UTC", "2026-03-01T07:00:00+00:00"),
    ("{{ scheduled_time }}", "Asia/Tokyo", "2026-03-01T16:00:00+09:00"),
    ("{{ scheduled_time - 90m:%H:%M }}", "UTC", "05:30"),
    ("s3://b/{{ scheduled_time:%Y }}/{{ scheduled_time:%m }}/x", "UTC", "s3://b/2026/03/x"),
    ("no template", "UTC", "no template"),
    ("{% for x in y %}", "UTC", "{% for x in y %}"),  # not ours: plain data, passed through
    (5, "UTC", 5),
])
def test_templates_render(value, tz, expected):
    assert timing.render(value, T, tz) == expected


@pytest.mark.parametrize("value", ["{{ __import__('os').system('id') }}", "{{ scheduled_time.__class__ }}",
                                   "{{ scheduled_time - 1y }}", "{{ config }}",
                                   "{{ scheduled_time }} {{ now }}"])
def test_only_scheduled_time_templates_are_allowed(value):
    with pytest.raises(UsageError, match="templates"):
        timing.check_template(value)


def test_catchup_plans():
    missed = [datetime(2026, 1, 1, h) for h in range(5)]
    assert plan_catchup("skip", missed, 100) == ([], missed)
    assert plan_catchup("latest", missed, 100) == (missed[-1:], missed[:-1])
    assert plan_catchup("all", missed, 100) == (missed, [])
    assert plan_catchup("all", missed, 3) == (missed[-3:], missed[:2])
    assert plan_catchup("latest", [], 100) == ([], [])
