"""The test console: one live run of the pipeline, explained.

``run_console()`` runs ``connector.pipeline.build.build_calendar`` (the very function
the background refresh runs) with a real Trace and keeps everything needed to
explain it: each step with its duration, every event kept or dropped and by
which filter, the alarms, the iCalendar, and a day timeline of what a screen
will show in each room. It never saves a snapshot: it is a test.

The HTML console (connector/views/console.py), ``2ical.php?debug=yes`` and
``manage.py test_calendar`` (``render_text()``) all show a ConsoleRun.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from django.utils import timezone

from connector.core.errors import SourceError
from connector.core.records import EventRecord
from connector.core.trace import Step, Trace
from connector.models import Calendar
from connector.pipeline import filters
from connector.pipeline.build import BuildResult, build_calendar

log = logging.getLogger(__name__)

# The timeline shows at most this many days (a window may be a year long).
TIMELINE_DAYS = 14

STEP_NAMES = {
    "token": "token",
    "connect": "connection",
    "fetch": "request",
    "filter": "filters",
    "alarms": "alarms",
    "ics": "iCalendar",
    "snapshot": "snapshot",
}


@dataclass(frozen=True)
class EventRow:
    """One event as the console lists it: what the screen shows, or why it does not."""

    resource: str
    start: dt.datetime | dt.date  # local time (calendar time zone), or a date
    end: dt.datetime | dt.date
    all_day: bool
    subject: str  # as the screen shows it (masked and detail level applied)
    masked: bool
    kept: bool
    dropped_by: str
    reason: str
    free_busy: str
    alarms: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        return "kept" if self.kept else "dropped"

    @property
    def when(self) -> str:
        if self.all_day:
            assert isinstance(self.start, dt.date) and isinstance(self.end, dt.date)
            last = self.end - dt.timedelta(days=1)
            if last <= self.start:
                return f"{self.start:%a %d %b}, all day"
            return f"{self.start:%a %d %b} to {last:%a %d %b}, all day"
        assert isinstance(self.start, dt.datetime) and isinstance(self.end, dt.datetime)
        if self.start.date() == self.end.date():
            return f"{self.start:%a %d %b %H:%M}-{self.end:%H:%M}"
        return f"{self.start:%a %d %b %H:%M} to {self.end:%a %d %b %H:%M}"


@dataclass(frozen=True)
class Block:
    """An event on one day's bar: position and width in percent of the day."""

    left: float
    width: float
    label: str
    title: str
    css: str


@dataclass(frozen=True)
class TimelineDay:
    day: dt.date
    blocks: list[Block]
    now_left: float | None  # the red "now" line on today's bar

    @property
    def label(self) -> str:
        return f"{self.day:%a %d %b}"


@dataclass(frozen=True)
class TimelineRoom:
    resource: str
    days: list[TimelineDay]
    event_count: int


@dataclass
class ConsoleRun:
    calendar: Calendar
    trace: Trace
    now: dt.datetime
    duration: float = 0.0
    result: BuildResult | None = None
    error: SourceError | None = None
    unexpected: str = ""  # class name of an exception that is not a SourceError
    rules: filters.FilterRules | None = None
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))

    @property
    def ok(self) -> bool:
        return self.result is not None

    @property
    def failed_step(self) -> Step | None:
        """The innermost failed step (steps nest: a read holds its token step)."""
        failed = [step for step in self.trace.steps if not step.ok]
        return failed[-1] if failed else None

    @property
    def failed_step_name(self) -> str:
        step = self.failed_step
        if self.error is not None and self.error.step:
            return STEP_NAMES.get(self.error.step, self.error.step)
        return STEP_NAMES.get(step.name, step.name) if step else ""

    @property
    def error_message(self) -> str:
        if self.error is not None:
            return self.error.message
        if self.unexpected:
            return f"Unexpected error ({self.unexpected}); the server log has the details."
        return ""

    @property
    def error_hint(self) -> str:
        return self.error.hint if self.error is not None else ""

    @property
    def error_code(self) -> str:
        return self.error.code if self.error is not None else ""

    @property
    def resources(self) -> list[str]:
        return [resource.address for resource in self.calendar.resources.all()] or [""]

    def events(self) -> list[EventRow]:
        if self.result is None or self.rules is None:
            return []
        alarms_by_key = {
            (event.record.resource, event.record.key): event.alarms for event in self.result.events
        }
        rows = []
        for decision in self.result.decisions:
            record = decision.record
            shown = filters.redact(record, self.rules)
            alarms = alarms_by_key.get((record.resource, record.key), []) if decision.kept else []
            start, end = _local(record.start, self.tz), _local(record.end, self.tz)
            rows.append(
                EventRow(
                    resource=record.resource,
                    start=start,
                    end=end,
                    all_day=record.all_day,
                    subject=shown.subject,
                    masked=shown.subject != record.subject,
                    kept=decision.kept,
                    dropped_by=decision.dropped_by,
                    reason=decision.reason,
                    free_busy=record.free_busy,
                    alarms=tuple(
                        f"{'appears' if alarm.rule.edge == 'start' else 'disappears'} "
                        f"{alarm.instant.astimezone(self.tz):%a %d %b %H:%M:%S}"
                        for alarm in alarms
                    ),
                )
            )
        rows.sort(key=lambda row: (_sort_instant(row.start, self.tz), row.resource))
        return rows

    def timeline(self, days: int = TIMELINE_DAYS) -> list[TimelineRoom]:
        """What a screen shows, per room and day (kept events only, as shown)."""
        if self.result is None:
            return []
        first = self.result.window.start.astimezone(self.tz).date()
        count = min(days, self.calendar.request_window)
        dates = [first + dt.timedelta(days=offset) for offset in range(count)]
        by_room: dict[str, list[EventRecord]] = {resource: [] for resource in self.resources}
        for event in self.result.events:
            by_room.setdefault(event.record.resource, []).append(event.record)
        rooms = []
        for resource, records in by_room.items():
            bars = [
                TimelineDay(
                    day=day,
                    blocks=_blocks(records, day, self.tz),
                    now_left=_now_left(self.now, day, self.tz),
                )
                for day in dates
            ]
            rooms.append(TimelineRoom(resource=resource, days=bars, event_count=len(records)))
        return rooms

    @property
    def timeline_truncated(self) -> bool:
        return self.calendar.request_window > TIMELINE_DAYS


def run_console(calendar: Calendar, *, now: dt.datetime | None = None) -> ConsoleRun:
    """A live fetch through the refresh's pipeline, with a trace; saves nothing."""
    now = now or timezone.now()
    run = ConsoleRun(calendar=calendar, trace=Trace(), now=now, tz=calendar.tzinfo)
    started = time.perf_counter()
    try:
        run.rules = filters.FilterRules.for_calendar(calendar)
        run.result = build_calendar(calendar, trace=run.trace, now=now)
    except SourceError as exc:
        run.error = exc
    except Exception as exc:
        # A bug, not an Exchange problem: the console still shows the steps so far.
        log.exception("Test console: unexpected error for calendar %s", calendar.calendar_id)
        run.unexpected = exc.__class__.__name__
    run.duration = time.perf_counter() - started
    return run


def _local(value: dt.datetime | dt.date, tz: ZoneInfo) -> dt.datetime | dt.date:
    return value.astimezone(tz) if isinstance(value, dt.datetime) else value


def _sort_instant(value: dt.datetime | dt.date, tz: ZoneInfo) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    return dt.datetime.combine(value, dt.time(), tzinfo=tz)


def _day_bounds(day: dt.date, tz: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    # Combine both ends: a day with a DST change is 23 or 25 hours long.
    return (
        dt.datetime.combine(day, dt.time(), tzinfo=tz),
        dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=tz),
    )


def _blocks(records: list[EventRecord], day: dt.date, tz: ZoneInfo) -> list[Block]:
    day_start, day_end = _day_bounds(day, tz)
    length = (day_end - day_start).total_seconds()
    blocks = []
    for record in records:
        if record.all_day:
            first = record.start.date() if isinstance(record.start, dt.datetime) else record.start
            end = record.end.date() if isinstance(record.end, dt.datetime) else record.end
            if first <= day < max(end, first + dt.timedelta(days=1)):
                blocks.append(
                    Block(0.0, 100.0, record.subject, f"all day: {record.subject}", "ews-allday")
                )
            continue
        assert isinstance(record.start, dt.datetime) and isinstance(record.end, dt.datetime)
        start = max(record.start.astimezone(tz), day_start)
        end = min(record.end.astimezone(tz), day_end)
        if end < start or (end == start and not day_start <= start < day_end):
            continue
        if end == start and record.start != record.end:
            continue  # ends exactly at midnight: belongs to the previous day only
        local_start = record.start.astimezone(tz)
        local_end = record.end.astimezone(tz)
        title = f"{local_start:%H:%M}-{local_end:%H:%M} {record.subject}"
        blocks.append(
            Block(
                left=(start - day_start).total_seconds() / length * 100,
                width=max((end - start).total_seconds() / length * 100, 0.3),
                label=f"{local_start:%H:%M} {record.subject}",
                title=title,
                css="ews-tentative" if record.free_busy == "Tentative" else "",
            )
        )
    return blocks


def _now_left(now: dt.datetime, day: dt.date, tz: ZoneInfo) -> float | None:
    day_start, day_end = _day_bounds(day, tz)
    if not day_start <= now < day_end:
        return None
    return (now - day_start).total_seconds() / (day_end - day_start).total_seconds() * 100


# --- text, for manage.py test_calendar ------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def step_lines(step: Step) -> list[str]:
    """What a step says, without the per-event notes the event list repeats."""
    if step.name == "filter":
        lines = [note for note in step.details if not note.startswith("dropped by")]
        for name, count in sorted(step.data.get("dropped", {}).items()):
            lines.append(f"{count} dropped by {name}")
        return lines
    return list(step.details)


def render_text(run: ConsoleRun, *, show_ics: bool = False) -> str:
    calendar = run.calendar
    server = calendar.server
    out = [
        f"Test of calendar {calendar.calendar_id} through server {server.server_id} "
        f"({server.get_type_display()}), "
        f"{timezone.localtime(run.now):%Y-%m-%d %H:%M:%S %Z}",
    ]
    if run.result is not None:
        window = run.result.window
        out.append(
            f"Window: {window.start.astimezone(run.tz):%Y-%m-%d %H:%M} to "
            f"{window.end.astimezone(run.tz):%Y-%m-%d %H:%M} ({run.tz.key})"
        )
    out += ["", "Steps:"]
    for step in run.trace.steps:
        mark = "ok" if step.ok else "FAILED"
        out.append(f"  {mark:<6} {_ms(step.duration):>8}  {step.title}")
        for line in step_lines(step):
            out.append(f"{'':18}{line}")
    if run.result is not None:
        rows = run.events()
        kept = sum(1 for row in rows if row.kept)
        out += ["", f"Events: {kept} kept, {len(rows) - kept} dropped"]
        for row in rows:
            line = (
                f"  {row.status:<8} {row.when:<34} {row.resource or 'own calendar'}: {row.subject}"
            )
            if row.masked:
                line += " (masked)"
            if not row.kept:
                line += f"  <- {row.dropped_by} ({row.reason})"
            out.append(line)
            for alarm in row.alarms:
                out.append(f"{'':11}alarm: {alarm}")
        out += ["", "What the screens show:"]
        for room in run.timeline():
            out.append(f"  {room.resource or 'own calendar'}:")
            for day in room.days:
                labels = "; ".join(block.label for block in day.blocks) or "free"
                out.append(f"    {day.label}: {labels}")
        size = len(run.result.ics.encode("utf-8"))
        out += ["", f"iCalendar: {run.result.event_count} events, {size} bytes."]
        if show_ics:
            out += ["", run.result.ics.replace("\r\n", "\n").rstrip("\n")]
        out += ["", f"Result: OK in {_ms(run.duration)}."]
    else:
        out += ["", f"Result: FAILED at the {run.failed_step_name or 'first'} step."]
        out.append(f"Error: {run.error_message}")
        if run.error_hint:
            out.append(f"Hint: {run.error_hint}")
    return "\n".join(out) + "\n"
