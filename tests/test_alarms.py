"""Display alarm instants for the four relations, in the calendar's time zone."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from connector.pipeline.alarms import AlarmRule, alarms_for, compute, edge_date
from tests.fixtures.feed import make_record

PARIS = ZoneInfo("Europe/Paris")
UTC = dt.UTC

# 09:00–10:00 Paris time on Monday 2 March 2026 (UTC+1): 08:00–09:00 UTC.
MEETING = make_record(
    "Sync",
    start=dt.datetime(2026, 3, 2, 8, 0, tzinfo=UTC),
    end=dt.datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
)


def test_event_start_minus_600_is_ten_minutes_before_start() -> None:
    alarm = compute(MEETING, AlarmRule("start", "event-start", -600), PARIS)
    assert alarm.instant == dt.datetime(2026, 3, 2, 7, 50, tzinfo=UTC)
    assert alarm.relative == dt.timedelta(minutes=-10)
    assert alarm.relative_to == "START"


def test_event_end_plus_600_is_ten_minutes_after_end() -> None:
    alarm = compute(MEETING, AlarmRule("end", "event-end", 600), PARIS)
    assert alarm.instant == dt.datetime(2026, 3, 2, 9, 10, tzinfo=UTC)
    assert alarm.relative == dt.timedelta(minutes=10)
    assert alarm.relative_to == "END"


def test_day_start_is_midnight_local_of_the_event_date() -> None:
    alarm = compute(MEETING, AlarmRule("start", "day-start", 0), PARIS)
    assert alarm.relative is None
    assert alarm.instant == dt.datetime(2026, 3, 2, 0, 0, tzinfo=PARIS)
    assert alarm.instant == dt.datetime(2026, 3, 1, 23, 0, tzinfo=UTC)


def test_day_end_alarm_is_2359_local() -> None:
    alarm = compute(MEETING, AlarmRule("end", "day-end", 0), PARIS)
    assert alarm.instant == dt.datetime(2026, 3, 2, 23, 59, 59, tzinfo=PARIS)
    assert alarm.instant.tzinfo == UTC


def test_day_relations_add_their_offset() -> None:
    alarm = compute(MEETING, AlarmRule("start", "day-start", 7 * 3600), PARIS)
    assert alarm.instant == dt.datetime(2026, 3, 2, 7, 0, tzinfo=PARIS)


def test_day_start_follows_daylight_saving_time() -> None:
    # Paris moves to UTC+2 on 29 March 2026: local midnight is 22:00 UTC the day before.
    summer = make_record(
        start=dt.datetime(2026, 4, 1, 8, 0, tzinfo=UTC), end=dt.datetime(2026, 4, 1, 9, tzinfo=UTC)
    )
    alarm = compute(summer, AlarmRule("start", "day-start", 0), PARIS)
    assert alarm.instant == dt.datetime(2026, 3, 31, 22, 0, tzinfo=UTC)


def test_event_date_is_local_not_utc() -> None:
    # 00:30 Paris on 3 March is still 2 March in UTC: the local date counts.
    early = make_record(
        start=dt.datetime(2026, 3, 2, 23, 30, tzinfo=UTC),
        end=dt.datetime(2026, 3, 3, 0, 30, tzinfo=UTC),
    )
    assert edge_date(early, "start", PARIS) == dt.date(2026, 3, 3)
    alarm = compute(early, AlarmRule("start", "day-start", 0), PARIS)
    assert alarm.instant == dt.datetime(2026, 3, 3, 0, 0, tzinfo=PARIS)


def test_end_edge_of_event_across_midnight_uses_the_day_it_ends() -> None:
    late = make_record(
        start=dt.datetime(2026, 3, 2, 21, 30, tzinfo=UTC),  # 22:30 Paris
        end=dt.datetime(2026, 3, 3, 0, 0, tzinfo=UTC),  # 01:00 Paris next day
    )
    alarm = compute(late, AlarmRule("end", "day-end", 0), PARIS)
    assert alarm.instant == dt.datetime(2026, 3, 3, 23, 59, 59, tzinfo=PARIS)


def test_event_ending_at_midnight_ends_on_its_own_day() -> None:
    evening = make_record(
        start=dt.datetime(2026, 3, 2, 19, 0, tzinfo=UTC),
        end=dt.datetime(2026, 3, 2, 23, 0, tzinfo=UTC),  # midnight Paris
    )
    assert edge_date(evening, "end", PARIS) == dt.date(2026, 3, 2)


def test_all_day_event_alarms_use_local_midnights() -> None:
    holiday = make_record(all_day=True, start=dt.date(2026, 3, 4), end=dt.date(2026, 3, 6))
    start = compute(holiday, AlarmRule("start", "event-start", -600), PARIS)
    assert start.instant == dt.datetime(2026, 3, 3, 23, 50, tzinfo=PARIS)
    end = compute(holiday, AlarmRule("end", "day-end", 0), PARIS)
    assert end.instant == dt.datetime(2026, 3, 5, 23, 59, 59, tzinfo=PARIS)


def test_default_rules_produce_no_alarm() -> None:
    rules = [AlarmRule("start", "event-start", 0), AlarmRule("end", "event-end", 0)]
    assert alarms_for(MEETING, rules, PARIS) == []


@pytest.mark.parametrize("bad", [("middle", "event-start"), ("start", "noon")])
def test_unknown_edge_or_relation_is_refused(bad: tuple[str, str]) -> None:
    with pytest.raises(ValueError):
        AlarmRule(bad[0], bad[1], 0)
