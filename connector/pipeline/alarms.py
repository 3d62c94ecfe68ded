"""Display alarms: when an event appears on a screen and when it disappears.

Signage players show an event from its "start" alarm to its "end" alarm. The
PHP connector's parameters name what each alarm is related to (``event-start``,
``event-end``, ``day-start``, ``day-end``) plus an offset in seconds. Relative
relations become ``TRIGGER;RELATED=START|END`` durations; day relations become
absolute UTC instants computed in the calendar's time zone, because a player
cannot know which zone "the day" means. Default settings emit no alarm.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from connector.core.records import EventRecord

if TYPE_CHECKING:
    from connector.models import Calendar

EVENT_START, EVENT_END, DAY_START, DAY_END = "event-start", "event-end", "day-start", "day-end"
RELATIONS = (EVENT_START, EVENT_END, DAY_START, DAY_END)
DEFAULTS = {"start": (EVENT_START, 0), "end": (EVENT_END, 0)}
DAY_END_TIME = dt.time(23, 59, 59)


@dataclass(frozen=True)
class AlarmRule:
    edge: str  # "start" (the event appears) or "end" (it disappears)
    related: str  # one of RELATIONS
    offset: int = 0  # seconds, negative = before

    def __post_init__(self) -> None:
        if self.edge not in DEFAULTS:
            raise ValueError(f"unknown alarm edge {self.edge!r}")
        if self.related not in RELATIONS:
            raise ValueError(f"unknown alarm relation {self.related!r}")

    @property
    def is_default(self) -> bool:
        return (self.related, self.offset) == DEFAULTS[self.edge]

    def describe(self) -> str:
        sign = "+" if self.offset >= 0 else "-"
        return f"{self.edge}: {self.related} {sign}{abs(self.offset)}s"


@dataclass(frozen=True)
class ComputedAlarm:
    """One VALARM of one event."""

    rule: AlarmRule
    instant: dt.datetime  # when it fires, aware UTC (for the console and tests)
    relative: dt.timedelta | None  # the TRIGGER duration for event-* relations
    relative_to: str = ""  # "START" or "END" with ``relative``

    @property
    def trigger(self) -> dt.timedelta | dt.datetime:
        return self.relative if self.relative is not None else self.instant


def rules_for(calendar: Calendar) -> list[AlarmRule]:
    """The calendar's alarms that differ from the defaults, start edge first."""
    rules = [AlarmRule(alarm.edge, alarm.related, alarm.offset) for alarm in calendar.alarms.all()]
    return sorted((rule for rule in rules if not rule.is_default), key=lambda r: r.edge != "start")


def _local_bounds(record: EventRecord, tz: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """Start and end as aware datetimes; all-day dates are midnights in ``tz``."""
    if isinstance(record.start, dt.datetime) and isinstance(record.end, dt.datetime):
        return record.start, record.end
    start = dt.datetime.combine(_as_date(record.start), dt.time(), tzinfo=tz)
    end = dt.datetime.combine(_as_date(record.end), dt.time(), tzinfo=tz)
    return start, end


def _as_date(value: dt.date | dt.datetime) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else value


def edge_date(record: EventRecord, edge: str, tz: ZoneInfo) -> dt.date:
    """The local date "the event's date" means for an edge.

    The start edge uses the day the event starts; the end edge the last day it
    occupies (an event ending at midnight, or an all-day event, whose end is
    exclusive, ends on the day before).
    """
    start, end = _local_bounds(record, tz)
    if edge == "start":
        return start.astimezone(tz).date()
    last_moment = max(start, end - dt.timedelta(microseconds=1))
    return last_moment.astimezone(tz).date()


def compute(record: EventRecord, rule: AlarmRule, tz: ZoneInfo) -> ComputedAlarm:
    start, end = _local_bounds(record, tz)
    offset = dt.timedelta(seconds=rule.offset)
    if rule.related in (EVENT_START, EVENT_END):
        anchor = start if rule.related == EVENT_START else end
        return ComputedAlarm(
            rule=rule,
            instant=(anchor + offset).astimezone(dt.UTC),
            relative=offset,
            relative_to="START" if rule.related == EVENT_START else "END",
        )
    day = edge_date(record, rule.edge, tz)
    clock = dt.time() if rule.related == DAY_START else DAY_END_TIME
    instant = dt.datetime.combine(day, clock, tzinfo=tz) + offset
    return ComputedAlarm(rule=rule, instant=instant.astimezone(dt.UTC), relative=None)


def alarms_for(record: EventRecord, rules: list[AlarmRule], tz: ZoneInfo) -> list[ComputedAlarm]:
    return [compute(record, rule, tz) for rule in rules if not rule.is_default]
