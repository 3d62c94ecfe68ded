"""The test console: one live run of the pipeline, explained, within a time budget.

``stream_console()`` reads each room through the refresh's own pipeline functions
(``connector.pipeline.build.source_for``, ``fetch_resource`` and ``build_calendar``)
with a trace, in a thread of its own, and hands over each step as it finishes, so
the page shows the first ones while Exchange is still answering. Whatever Exchange
does, it stops waiting after CONSOLE_BUDGET_SECONDS: the sources run inside
``connector.core.budget.limited`` (shorter time-outs, a busy Exchange tried once
and its back-off reported), and a step still running then is named as such.

Each room is read on its own: a room that fails does not hide the rooms that
worked (their events and timeline are shown, the failing room with its error,
its upstream code and its hint). It keeps everything needed to explain the run:
each step with its duration, every event kept or dropped and by which filter
(with its sensitivity and free/busy), the alarms, the iCalendar, a day timeline of
what a screen will show in each room, and a hint when the room mailboxes rewrite
subjects. It never saves a snapshot: it is a test.

The HTML console (connector/views/console.py), ``2ical.php?debug=yes`` and
``manage.py test_calendar`` (``render_text()``) all show a ConsoleRun.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connections
from django.utils import timezone

from connector.core import budget
from connector.core.errors import SourceError
from connector.core.records import EventRecord
from connector.core.trace import Step, Trace
from connector.models import Calendar
from connector.pipeline import filters
from connector.pipeline.build import (
    BuildResult,
    build_calendar,
    resources_of,
    source_for,
)
from connector.pipeline.rooms import RoomJob, iter_rooms

log = logging.getLogger(__name__)

# The timeline shows at most this many days (a window may be a year long).
TIMELINE_DAYS = 14

# What a room mailbox's calendar processing does to subjects (Exchange's defaults
# for rooms: AddOrganizerToSubject, DeleteSubject, RemovePrivateProperty), and the
# fix, as the PHP connector's manual says in "Check configuration".
CALENDAR_PROCESSING_FIX = (
    "Set-CalendarProcessing -Identity {room} -AddOrganizerToSubject $false "
    "-DeleteSubject $false -RemovePrivateProperty $false"
)


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
    free_busy: str  # Exchange's LegacyFreeBusyStatus / Graph's showAs
    sensitivity: str = "Normal"  # Normal | Personal | Private | Confidential
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
    error: SourceError | None = None  # the room could not be read: no bars


@dataclass
class RoomResult:
    """How reading one room went."""

    resource: str
    ok: bool = False
    count: int = 0
    error: SourceError | None = None
    failed_step: Step | None = None  # the step of the trace that failed for this room
    reached: bool = True  # False: the budget ran out before this room was read

    @property
    def label(self) -> str:
        return self.resource or "own calendar"


@dataclass(frozen=True)
class SubjectHint:
    """Room mailboxes whose calendar processing seems to rewrite subjects."""

    resource: str
    organizer: int  # events whose subject is (or starts with) the organizer's name
    empty: int  # events without a subject
    private: int  # "Private" as the subject of an event that is not private

    @property
    def command(self) -> str:
        return CALENDAR_PROCESSING_FIX.format(room=self.resource or "<room>")

    @property
    def signs(self) -> str:
        parts = []
        if self.organizer:
            parts.append(f"{self.organizer} with the organizer's name as subject")
        if self.empty:
            parts.append(f"{self.empty} without a subject")
        if self.private:
            parts.append(f'{self.private} called "Private" though not private')
        return ", ".join(parts)


@dataclass
class ConsoleRun:
    calendar: Calendar
    trace: Trace
    now: dt.datetime
    duration: float = 0.0
    result: BuildResult | None = None
    error: SourceError | None = None  # what failed first (a room, or before any room)
    unexpected: str = ""  # class name of an exception that is not a SourceError
    rules: filters.FilterRules | None = None
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    rooms: list[RoomResult] = field(default_factory=list)
    finished: list[Step] = field(default_factory=list)  # steps in the order they ended
    budget_seconds: float = 0.0
    timed_out: bool = False  # the budget ran out before the fetch ended
    running: list[Step] = field(default_factory=list)  # steps still running then

    @property
    def ok(self) -> bool:
        """Every room read and the iCalendar built."""
        return self.result is not None and self.error is None and not self.unexpected

    @property
    def partial(self) -> bool:
        """Some rooms read, at least one not: the rooms that worked are shown."""
        return self.result is not None and not self.ok

    @property
    def outcome(self) -> str:
        return "ok" if self.ok else "partial" if self.partial else "failing"

    @property
    def steps(self) -> list[Step]:
        """The steps that ended, in the order they ended (as the page received them)."""
        return list(self.finished)

    @property
    def failed_step(self) -> Step | None:
        """The step that failed first: the innermost (a read ends after its token step)."""
        room = next((room for room in self.rooms if room.failed_step is not None), None)
        if room is not None:
            return room.failed_step
        return next((step for step in self.finished if not step.ok), None)

    @property
    def failed_step_title(self) -> str:
        """The failed step as the step list names it (or the one the budget cut short)."""
        if self.timed_out and self.running:
            return self.running[-1].title
        step = self.failed_step
        return step.title if step is not None else ""

    @property
    def failed_step_name(self) -> str:
        return self.failed_step_title

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
        """The upstream's own code (HTTP status, ResponseCode, AADSTS, exception name)."""
        if self.error is not None:
            return self.error.upstream or self.error.code
        return self.unexpected

    @property
    def back_off(self) -> str:
        return back_off_text(self.error)

    @property
    def failed_rooms(self) -> list[RoomResult]:
        return [room for room in self.rooms if not room.ok]

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
                    sensitivity=record.sensitivity,
                    alarms=tuple(
                        f"{'appears' if alarm.rule.edge == 'start' else 'disappears'} "
                        f"{alarm.instant.astimezone(self.tz):%a %d %b %H:%M:%S}"
                        for alarm in alarms
                    ),
                )
            )
        rows.sort(key=lambda row: (_sort_instant(row.start, self.tz), row.resource))
        return rows

    def subject_hints(self) -> list[SubjectHint]:
        """Rooms whose events look rewritten by the room mailbox's calendar processing."""
        if self.result is None:
            return []
        by_room: dict[str, list[EventRecord]] = {}
        for decision in self.result.decisions:
            by_room.setdefault(decision.record.resource, []).append(decision.record)
        hints = []
        for resource, records in by_room.items():
            organizer = sum(1 for record in records if _organizer_subject(record))
            empty = sum(1 for record in records if not record.subject.strip())
            private = sum(
                1
                for record in records
                if record.subject.strip().lower() == "private" and record.sensitivity == "Normal"
            )
            if organizer or empty or private:
                hints.append(SubjectHint(resource, organizer, empty, private))
        return hints

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
        failed = {room.resource: room.error for room in self.rooms if not room.ok}
        rooms = []
        for resource, records in by_room.items():
            if resource in failed:
                rooms.append(TimelineRoom(resource, [], 0, error=failed[resource]))
                continue
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


def back_off_text(error: SourceError | None) -> str:
    """The back-off Exchange asked for, in words ("" when it asked none)."""
    if error is None or not error.back_off:
        return ""
    seconds = error.back_off
    if seconds >= 120:
        amount = f"{seconds / 60:.0f} minutes"
    else:
        amount = f"{seconds:g} second{'s' if seconds != 1 else ''}"
    return (
        f"Exchange asked to wait {amount} before the next request; the console tried once "
        "and did not wait (the background refresh waits when the wait fits in REFRESH_TIMEOUT)."
    )


def _organizer_subject(record: EventRecord) -> bool:
    name = record.organizer_name.strip().lower()
    subject = record.subject.strip().lower()
    return bool(name) and (subject == name or subject.startswith(name + " "))


# --- running ----------------------------------------------------------------------

_DONE = object()


def stream_console(
    calendar: Calendar, *, now: dt.datetime | None = None, seconds: float | None = None
) -> tuple[ConsoleRun, Iterator[Step]]:
    """The run, and an iterator of its steps as they end; the run is complete after it.

    The fetch starts with the iteration, in a thread of its own (with its own
    database connection). The iterator ends when the fetch ends or when
    ``seconds`` (CONSOLE_BUDGET_SECONDS) have passed, whichever is first; a fetch
    left running then finishes on its own within its time-outs, and saves nothing.
    """
    now = now or timezone.now()
    seconds = float(seconds or settings.CONSOLE_BUDGET_SECONDS)
    events: queue.SimpleQueue[object] = queue.SimpleQueue()
    trace = Trace(on_finish=events.put)
    run = ConsoleRun(calendar=calendar, trace=trace, now=now, tz=calendar.tzinfo)
    run.budget_seconds = seconds
    wanted = resources_of(calendar)  # read here: the thread has its own connection

    def work(result: ConsoleRun) -> None:
        try:
            with budget.limited(seconds, retries=False):
                _fetch(result, wanted, trace)
        finally:
            connections.close_all()  # this thread's own
            events.put(_DONE)

    def steps() -> Iterator[Step]:
        started = time.perf_counter()
        deadline = time.monotonic() + seconds
        # The thread fills a copy; this one is handed over when it ends in time.
        shadow = ConsoleRun(calendar=calendar, trace=trace, now=now, tz=run.tz)
        thread = threading.Thread(target=work, args=(shadow,), name="console", daemon=True)
        thread.start()
        while True:
            try:
                item = events.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                _budget_spent(run, trace, wanted, shadow)
                break
            if item is _DONE:
                _take(run, shadow)
                break
            assert isinstance(item, Step)
            run.finished.append(item)
            yield item
        run.duration = time.perf_counter() - started

    return run, steps()


def run_console(
    calendar: Calendar, *, now: dt.datetime | None = None, seconds: float | None = None
) -> ConsoleRun:
    """A live fetch through the refresh's pipeline, with a trace; saves nothing."""
    run, steps = stream_console(calendar, now=now, seconds=seconds)
    for _ in steps:
        pass
    return run


def _fetch(run: ConsoleRun, wanted: list[str], trace: Trace) -> None:
    """Every room at once (as a refresh round reads them), then the calendar from those
    that worked."""
    calendar = run.calendar
    try:
        run.rules = filters.FilterRules.for_calendar(calendar)
        window = calendar.window(run.now)
        source = source_for(calendar, trace=trace)
        run.rooms.extend(RoomResult(resource=resource) for resource in wanted)
        jobs = [
            RoomJob(
                source,
                resource,
                window,
                include_body=calendar.include_body,
                trace=trace.child(),
            )
            for resource in wanted
        ]
        records: dict[str, list[EventRecord]] = {}
        for index, answer in iter_rooms(jobs):
            room, resource = run.rooms[index], wanted[index]
            if isinstance(answer, SourceError):
                room.error = answer
                room.failed_step = _failed_step_of(answer, resource, jobs[index].trace, trace)
                run.error = run.error or answer
                records[resource] = []  # shown as "could not be read", not as free
                continue
            records[resource] = answer
            room.ok, room.count = True, len(answer)
        if any(room.ok for room in run.rooms):
            run.result = build_calendar(calendar, trace=trace, records=records, now=run.now)
    except SourceError as exc:
        run.error = exc
    except Exception as exc:
        # A bug, not an Exchange problem: the console still shows the steps so far.
        log.exception("Test console: unexpected error for calendar %s", calendar.calendar_id)
        run.unexpected = exc.__class__.__name__


def _failed_step_of(
    error: SourceError, resource: str, room: Trace | None, trace: Trace
) -> Step | None:
    """The step a room failed in, as the step list shows it.

    The source's own steps (token, connection, and its request for each room) are
    listed in ``trace``: the shared one the error names, else the innermost failed
    step naming the room (rooms are read at once, so steps of rooms interleave),
    else the innermost of the room's own steps.
    """
    failed = [step for step in trace.steps if not step.ok]
    if error.step != "fetch":
        shared = [step for step in failed if step.name == error.step]
        if shared:
            return shared[-1]
    if resource:
        named = [step for step in failed if resource.lower() in step.title.lower()]
        if named:
            return named[-1]
    return _innermost_failure(room.steps if room is not None else [])


def _innermost_failure(steps: list[Step]) -> Step | None:
    """Steps are listed as they start and nest: the last failed one is the innermost."""
    failed = [step for step in steps if not step.ok]
    return failed[-1] if failed else None


def _take(run: ConsoleRun, shadow: ConsoleRun) -> None:
    run.result, run.error, run.unexpected = shadow.result, shadow.error, shadow.unexpected
    run.rules, run.rooms = shadow.rules, shadow.rooms


def _budget_spent(run: ConsoleRun, trace: Trace, wanted: list[str], shadow: ConsoleRun) -> None:
    """No answer in time: say which step was still running, and which rooms worked."""
    run.timed_out = True
    run.running = [step for step in list(trace.steps) if not step.done]
    step = run.running[-1].title if run.running else "the first step"
    run.error = SourceError(
        f"No answer within the console's {run.budget_seconds:g} seconds: "
        f"“{step}” was still running.",
        code="console-budget",
        upstream="no answer",
        hint="Exchange (or the identity platform) is slow or does not answer from this "
        "machine. The console stops waiting after CONSOLE_BUDGET_SECONDS; the background "
        "refresh waits up to REFRESH_TIMEOUT and each request up to EXCHANGE_REQUEST_TIMEOUT. "
        "Check the firewall and the server's load.",
        retryable=True,
    )
    rooms = list(shadow.rooms)
    done = {room.resource for room in rooms if room.ok or room.error is not None}
    run.rooms = [room for room in rooms if room.resource in done]
    for resource in wanted:
        if resource not in done:
            run.rooms.append(RoomResult(resource=resource, error=run.error, reached=False))


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
