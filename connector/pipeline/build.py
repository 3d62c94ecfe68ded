"""One run of the pipeline: source → records → filters → alarms → iCalendar.

``build_calendar()`` is what the background refresh, the feed view, the test
console and ``manage.py test_calendar`` all run. It does not touch snapshots:
the caller decides what to do with the result (save it, or just show it).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from django.utils import timezone

from connector.core.errors import SourceError
from connector.core.records import EventRecord, Window
from connector.core.trace import NullTrace, Trace
from connector.models import Calendar, Server
from connector.pipeline import alarms, filters
from connector.pipeline.ics_writer import FeedEvent, FeedInfo, build_ics
from connector.sources import Source, open_source

__all__ = [
    "BuildResult",
    "Source",
    "StaleRoom",
    "build_calendar",
    "fetch_resource",
    "source_for",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StaleRoom:
    """A room that failed and is shown from its last good events (sendCacheOnServerError)."""

    address: str
    failing_since: dt.datetime
    fetched_at: dt.datetime  # when its events were read
    error: str

    def as_json(self) -> dict[str, str]:
        return {
            "address": self.address,
            "failing_since": self.failing_since.isoformat(),
            "fetched_at": self.fetched_at.isoformat(),
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: dict[str, str]) -> StaleRoom:
        return cls(
            address=data["address"],
            failing_since=dt.datetime.fromisoformat(data["failing_since"]),
            fetched_at=dt.datetime.fromisoformat(data["fetched_at"]),
            error=data.get("error", ""),
        )


@dataclass
class BuildResult:
    """What a run produced, and enough about how to explain it."""

    calendar_id: str
    ics: str
    window: Window
    generated: dt.datetime  # when the data was read
    decisions: list[filters.Decision]  # one per record in the window, kept or dropped
    events: list[FeedEvent]  # what the feed shows: redacted records with their alarms
    resource_counts: dict[str, int]  # items in the window per resource, before filtering
    alarm_rules: list[alarms.AlarmRule] = field(default_factory=list)
    stale_rooms: tuple[StaleRoom, ...] = ()  # shown from their last good events

    @property
    def event_count(self) -> int:
        return len(self.events)

    @property
    def kept(self) -> list[filters.Decision]:
        return [decision for decision in self.decisions if decision.kept]

    @property
    def dropped(self) -> list[filters.Decision]:
        return [decision for decision in self.decisions if not decision.kept]

    def dropped_by_filter(self) -> dict[str, int]:
        return dict(Counter(decision.dropped_by for decision in self.dropped))


def resources_of(calendar: Calendar) -> list[str]:
    """The calendar's resources in order; none means the account's own calendar ("")."""
    addresses = [resource.address for resource in calendar.resources.all()]
    return addresses or [""]


def feed_info(calendar: Calendar) -> FeedInfo:
    return FeedInfo(
        name=calendar.label or calendar.calendar_id,
        refresh_interval=calendar.cache_persistence,
        timezone=str(calendar.tzinfo.key),
        label=calendar.label,
        include_body=calendar.include_body,
    )


def source_for(
    calendar: Calendar, *, server: Server | None = None, trace: Trace | None = None
) -> Source:
    """What reads the calendar's rooms: its server (or ``server``), with its own credentials.

    The services reach Exchange only through here and ``fetch_resource``.
    """
    return open_source(server or calendar.server, calendar=calendar, trace=trace or NullTrace())


def fetch_resource(
    source: Source,
    resource: str,
    window: Window,
    *,
    include_body: bool,
    trace: Trace,
) -> list[EventRecord]:
    """One resource's records, as one step of the trace."""
    with trace.step("fetch", f"Read {resource or 'the account’s own calendar'}") as step:
        try:
            records = source.fetch(resource, window, include_body=include_body)
        except SourceError as exc:
            exc.resource = exc.resource or resource
            raise
        step.note(f"{len(records)} items")
        step.data["resource"] = resource
        step.data["count"] = len(records)
    return records


def _bounds(record: EventRecord, tz: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    if isinstance(record.start, dt.datetime) and isinstance(record.end, dt.datetime):
        return record.start, record.end
    start = record.start.date() if isinstance(record.start, dt.datetime) else record.start
    end = record.end.date() if isinstance(record.end, dt.datetime) else record.end
    return (
        dt.datetime.combine(start, dt.time(), tzinfo=tz),
        dt.datetime.combine(end, dt.time(), tzinfo=tz),
    )


def in_window(record: EventRecord, window: Window, tz: ZoneInfo) -> bool:
    """Overlaps [start, end); a zero-length event counts when its instant is inside."""
    start, end = _bounds(record, tz)
    if start >= window.end:
        return False
    return end > window.start or (start == end and start >= window.start)


def build_calendar(
    calendar: Calendar,
    *,
    trace: Trace | None = None,
    records: dict[str, list[EventRecord]] | None = None,
    now: dt.datetime | None = None,
    stale_rooms: tuple[StaleRoom, ...] = (),
) -> BuildResult:
    """Fetch (unless ``records`` are given), filter, add alarms, write the iCalendar.

    ``records`` may come from a wider window (a room shared with other
    calendars is fetched once for all of them): each calendar keeps what
    overlaps its own window. Resources missing from ``records`` are fetched.
    ``stale_rooms`` names the rooms whose ``records`` are a last good copy.
    Raises SourceError when a resource cannot be read: a feed that silently
    lacked a room would tell a screen the room is free.
    """
    trace = trace or NullTrace()
    now = now or timezone.now()
    tz = calendar.tzinfo
    window = calendar.window(now)
    wanted = resources_of(calendar)
    given = records or {}
    missing = [resource for resource in wanted if resource not in given]
    fetched: dict[str, list[EventRecord]] = {}
    if missing:
        source = source_for(calendar, trace=trace)
        for resource in missing:
            fetched[resource] = fetch_resource(
                source, resource, window, include_body=calendar.include_body, trace=trace
            )

    by_resource = {
        resource: [
            record
            for record in (given[resource] if resource in given else fetched[resource])
            if in_window(record, window, tz)
        ]
        for resource in wanted
    }
    rules = filters.FilterRules.for_calendar(calendar)
    with trace.step("filter", "Filters") as step:
        decisions = [
            decision
            for resource in wanted
            for decision in filters.apply_filters(by_resource[resource], rules)
        ]
        kept = [filters.redact(decision.record, rules) for decision in decisions if decision.kept]
        step.data["kept"] = len(kept)
        step.data["dropped"] = dict(
            Counter(decision.dropped_by for decision in decisions if not decision.kept)
        )
        step.note(f"{len(kept)} kept, {len(decisions) - len(kept)} dropped")
        for decision in decisions:
            if not decision.kept:
                step.note(
                    f"dropped by {decision.dropped_by} ({decision.reason}): "
                    f"{decision.record.subject!r} in {decision.record.resource or 'own calendar'}"
                )

    alarm_rules = alarms.rules_for(calendar)
    with trace.step("alarms", "Alarms") as step:
        events = [FeedEvent(record, alarms.alarms_for(record, alarm_rules, tz)) for record in kept]
        if alarm_rules:
            for rule in alarm_rules:
                step.note(rule.describe())
        else:
            step.note("default settings: no alarms")

    with trace.step("ics", "iCalendar") as step:
        ics = build_ics(feed_info(calendar), events, stamp=window.start)
        step.data["bytes"] = len(ics.encode("utf-8"))
        step.note(f"{len(events)} events, {step.data['bytes']} bytes")

    return BuildResult(
        calendar_id=calendar.calendar_id,
        ics=ics,
        window=window,
        generated=now,
        decisions=decisions,
        events=events,
        resource_counts={resource: len(by_resource[resource]) for resource in wanted},
        alarm_rules=alarm_rules,
        stale_rooms=stale_rooms,
    )
