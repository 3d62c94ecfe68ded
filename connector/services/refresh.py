"""Refreshing snapshots: the step that catches SourceError and records the outcome.

One *round* refreshes a set of calendars: every room is fetched once per
upstream (same credentials) with the widest window any calendar needs, the
rooms concurrently up to each upstream's limit (connector.pipeline.rooms), and
each calendar is rebuilt from those answers, clipped to its own window, as soon
as its rooms are in. A broken room fails only the calendars that show it, or,
with sendCacheOnServerError, makes them partly stale (its last good events
stand in: connector.pipeline.room_events); a broken calendar never stops the
others. The background tasks, ``manage.py refresh_calendars`` and
the feed view (for a stale snapshot) all go through ``refresh_calendars()``.

A calendar being refreshed is *claimed* (connector/services/claims.py), so
that concurrent feed requests and workers, in any number of processes, do not
all ask Exchange at once. After a failure, feed requests do not try again
before a back-off has passed: a failing Exchange costs one request per
back-off, not one per player request, and web workers answer at once.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.db import connections, transaction
from django.db.models import F, prefetch_related_objects
from django.utils import timezone

from connector.core import metrics
from connector.core.errors import SourceError
from connector.core.records import EventRecord, Window
from connector.models import Calendar, RefreshStatus, Server
from connector.pipeline.build import (
    Source,
    StaleRoom,
    build_calendar,
    resources_of,
    source_for,
)
from connector.pipeline.room_events import RoomRead, last_good, remember
from connector.pipeline.rooms import RoomAnswer, RoomJob, iter_rooms
from connector.pipeline.snapshots import save_snapshot
from connector.services.claims import claim_all, kept, release_all, status_pk, wait_for_release

log = logging.getLogger(__name__)

RoomKey = tuple[str, str]  # (upstream key, lower-cased resource)

# After a failed refresh, feed requests wait this long before they try Exchange again,
# doubling with each failure up to the calendar's period (background rounds go on).
FEED_RETRY_FIRST = dt.timedelta(seconds=10)
# A round writes the last good events of the rooms that answered by this many at a time.
KEEP_EVERY = 50


@dataclass
class RefreshOutcome:
    calendar_id: str
    ok: bool
    event_count: int = 0
    duration: float = 0.0  # seconds
    changed: bool = False
    skipped: bool = False  # another process was refreshing it already
    error: str = ""
    hint: str = ""
    code: str = ""
    # Rooms that failed and are shown from their last good events: the snapshot was
    # written (partly stale) although the outcome is not ok.
    stale_rooms: tuple[str, ...] = ()

    def line(self) -> str:
        """One line for logs and ``manage.py refresh_calendars``."""
        if self.skipped:
            return f"{self.calendar_id}: skipped (already being refreshed)"
        state = "ok" if self.ok else "failed"
        if self.stale_rooms:
            state = f"partly stale ({', '.join(self.stale_rooms)} from the last good copy)"
        head = f"{self.calendar_id}: {state}"
        head += f", {self.event_count} events, {self.duration:.2f} s"
        if self.ok:
            return head + (", changed" if self.changed else ", unchanged")
        text = f"{head} — {self.error}"
        if self.hint:
            text += f" Hint: {self.hint}"
        return text


@dataclass
class _Room:
    """One (upstream, resource) to fetch in a round, for every calendar showing it."""

    source: Source
    server_id: int
    resource: str
    window: Window
    include_body: bool


def _timeout_error(seconds: float) -> SourceError:
    return SourceError(
        f"The refresh took longer than {seconds:g} s and was not waited for.",
        code="timeout",
        hint="Exchange is slow or unreachable; check its load and the network, or raise "
        "REFRESH_TIMEOUT / FEED_REFRESH_TIMEOUT.",
        retryable=True,
    )


def _internal_error(exc: BaseException) -> SourceError:
    return SourceError(
        f"Internal error while refreshing ({exc.__class__.__name__}).",
        code="internal",
        hint="This is a bug in ews-calendar; the server log has the details.",
    )


# --- recording outcomes -------------------------------------------------------------


def record(
    calendar: Calendar, outcome: RefreshOutcome, *, now: dt.datetime, status: int | None = None
) -> None:
    """Write the outcome beside the snapshot (one short UPDATE) and count it.

    ``status`` is the calendar's RefreshStatus pk when the caller knows it.
    """
    if outcome.skipped:
        return
    pk = status if status is not None else status_pk(calendar)
    finished = now + dt.timedelta(seconds=outcome.duration)
    fields: dict[str, object] = {"last_attempt": now, "last_duration": outcome.duration}
    if outcome.ok:
        fields.update(last_success=finished, consecutive_failures=0)
    else:
        fields.update(
            last_error=outcome.error,
            last_error_hint=outcome.hint,
            last_error_code=outcome.code,
            last_error_at=finished,
            consecutive_failures=F("consecutive_failures") + 1,
        )
    RefreshStatus.objects.filter(pk=pk).update(**fields)
    metrics.REFRESHES.labels(outcome="ok" if outcome.ok else "failed").inc()
    metrics.REFRESH_DURATION.observe(outcome.duration)


def _record_all(
    claimed: dict[int, int],
    calendars: list[Calendar],
    done: dict[int, RefreshOutcome],
    now: dt.datetime,
) -> None:
    """Record the round's outcomes in one transaction (one commit, not one per calendar)."""
    try:
        with transaction.atomic():
            for calendar in calendars:
                outcome = done.get(calendar.pk)
                if outcome is not None:
                    record(calendar, outcome, now=now, status=claimed[calendar.pk])
    except Exception:
        log.exception("could not record the outcomes of a refresh round")


def _failure(calendar: Calendar, error: SourceError, started: float) -> RefreshOutcome:
    return RefreshOutcome(
        calendar_id=calendar.calendar_id,
        ok=False,
        duration=time.monotonic() - started,
        error=error.message,
        hint=error.hint,
        code=error.code,
    )


# --- a round ------------------------------------------------------------------------------


def _widen(window: Window, other: Window) -> Window:
    return Window(min(window.start, other.start), max(window.end, other.end))


def _run_round(
    calendars: list[Calendar],
    now: dt.datetime,
    done: dict[int, RefreshOutcome],
) -> None:
    """Refresh the calendars, putting each outcome in ``done`` (by pk) as soon as known.

    The rooms are read concurrently (connector.pipeline.rooms); each calendar is
    rebuilt as soon as all its rooms have answered, while the others are still read.
    """
    started = time.monotonic()
    rooms: dict[RoomKey, _Room] = {}
    plans: dict[int, list[tuple[str, RoomKey]]] = {}
    _load_for_round(calendars)
    claimed = claim_all(calendars, now=timezone.now())
    mine = [calendar for calendar in calendars if calendar.pk in claimed]
    try:
        for calendar in calendars:
            if calendar.pk not in claimed:
                done[calendar.pk] = RefreshOutcome(calendar.calendar_id, ok=False, skipped=True)
                continue
            try:
                source = source_for(calendar)
            except SourceError as exc:
                done[calendar.pk] = _failure(calendar, exc, started)
                continue
            except Exception as exc:
                log.exception("could not open the source of calendar %s", calendar.calendar_id)
                done[calendar.pk] = _failure(calendar, _internal_error(exc), started)
                continue
            window = calendar.window(now)
            plans[calendar.pk] = []
            for resource in resources_of(calendar):
                key = (source.upstream_key, resource.lower())
                plans[calendar.pk].append((resource, key))
                if key in rooms:
                    room = rooms[key]
                    room.window = _widen(room.window, window)
                    room.include_body = room.include_body or calendar.include_body
                else:
                    rooms[key] = _Room(
                        source, calendar.server_id, resource, window, calendar.include_body
                    )

        with kept(mine):
            _read_and_rebuild(mine, plans, rooms, now, started, done)
    finally:
        _record_all(claimed, mine, done, now)
        release_all(mine)


def _load_for_round(calendars: list[Calendar]) -> None:
    """Load what the round reads of each calendar, a query per relation for them all.

    Calendars of one server share one Server (its credentials read and decrypted once);
    rooms, filters and alarms come with one query each instead of one per calendar.
    """
    servers: dict[int, Server] = {}
    for calendar in calendars:
        calendar.server = servers.setdefault(calendar.server_id, calendar.server)
    prefetch_related_objects(list(servers.values()), "service_account", "app_registration")
    prefetch_related_objects(calendars, "resources", "filter", "alarms")


def _read_and_rebuild(
    claimed: list[Calendar],
    plans: dict[int, list[tuple[str, RoomKey]]],
    rooms: dict[RoomKey, _Room],
    now: dt.datetime,
    started: float,
    done: dict[int, RefreshOutcome],
) -> None:
    keys = list(rooms)
    jobs = [
        RoomJob(room.source, room.resource, room.window, room.include_body)
        for room in rooms.values()
    ]
    waiting: dict[RoomKey, list[Calendar]] = {}
    missing: dict[int, int] = {}
    for calendar in claimed:
        if calendar.pk in done:
            continue
        wanted = {key for _, key in plans[calendar.pk]}
        missing[calendar.pk] = len(wanted)
        for key in wanted:
            waiting.setdefault(key, []).append(calendar)
    answers: dict[RoomKey, RoomAnswer] = {}
    unkept: list[RoomKey] = []  # answered, their last good events not written yet
    try:
        for index, answer in iter_rooms(jobs):
            key = keys[index]
            answers[key] = answer
            unkept.append(key)
            for calendar in waiting.get(key, []):
                missing[calendar.pk] -= 1
                if missing[calendar.pk] == 0:
                    done[calendar.pk] = _rebuild(
                        calendar, plans[calendar.pk], answers, now, started
                    )
            if len(unkept) >= KEEP_EVERY:
                # While the other rooms are read: the round's end waits for the last few only.
                _keep(unkept, rooms, answers, now)
    finally:
        _keep(unkept, rooms, answers, now)


def _keep(
    keys: list[RoomKey],
    rooms: dict[RoomKey, _Room],
    answers: dict[RoomKey, RoomAnswer],
    now: dt.datetime,
) -> None:
    """Write the rooms' last good events (connector.pipeline.room_events); empties ``keys``."""
    reads = [
        RoomRead(rooms[key].server_id, rooms[key].resource, answers[key], rooms[key].window)
        for key in keys
    ]
    keys.clear()
    try:
        remember(reads, now)
    except Exception:
        log.exception("could not keep the rooms' last good events")


def _rebuild(
    calendar: Calendar,
    plan: list[tuple[str, RoomKey]],
    answers: dict[RoomKey, RoomAnswer],
    now: dt.datetime,
    started: float,
) -> RefreshOutcome:
    records: dict[str, list[EventRecord]] = {}
    failed: dict[str, SourceError] = {}
    for resource, key in plan:
        answer = answers[key]
        if isinstance(answer, SourceError):
            failed[resource] = answer
        else:
            records[resource] = answer
    stale: tuple[StaleRoom, ...] = ()
    if failed:
        first = next(iter(failed.values()))
        stand_ins = _last_good_copies(calendar, failed, records, now)
        if stand_ins is None:
            return _failure(calendar, first, started)
        stale = tuple(room for room, _ in stand_ins.values())
        records.update({resource: copy for resource, (_, copy) in stand_ins.items()})
    try:
        result = build_calendar(calendar, records=records, now=now, stale_rooms=stale)
        _, changed = save_snapshot(calendar, result)
    except SourceError as exc:
        return _failure(calendar, exc, started)
    except Exception as exc:
        log.exception("could not rebuild calendar %s", calendar.calendar_id)
        return _failure(calendar, _internal_error(exc), started)
    outcome = RefreshOutcome(
        calendar_id=calendar.calendar_id,
        ok=not stale,
        event_count=result.event_count,
        duration=time.monotonic() - started,
        changed=changed,
        stale_rooms=tuple(room.address for room in stale),
    )
    if stale:
        # Served, but not all fresh: recorded as a failure (the status page shows it,
        # and the failing room is retried with the feed's back-off).
        first = next(iter(failed.values()))
        outcome.error, outcome.hint, outcome.code = first.message, first.hint, first.code
    return outcome


def _last_good_copies(
    calendar: Calendar,
    failed: dict[str, SourceError],
    fresh: dict[str, list[EventRecord]],
    now: dt.datetime,
) -> dict[str, tuple[StaleRoom, list[EventRecord]]] | None:
    """Each failing room's stand-in from its last good events; None when the calendar fails.

    Only with sendCacheOnServerError, only when some rooms answered (otherwise the
    whole last good snapshot is what players get), and only when every failing room
    has a copy that covered the calendar's window.
    """
    if not calendar.send_cache_on_server_error or not fresh:
        return None
    copies = last_good(calendar.server_id, failed)
    stand_ins = {}
    for resource, error in failed.items():
        copy = copies.get(resource.strip().lower())
        if copy is None or not copy.covers(calendar):
            return None
        room = StaleRoom(
            address=resource,
            failing_since=copy.failing_since or now,
            fetched_at=copy.fetched_at,
            error=error.message,
        )
        stand_ins[resource] = (room, copy.records)
    return stand_ins


def _in_thread(target: Callable[[], None], timeout: float) -> bool:
    """Run target in a thread and wait at most ``timeout`` seconds; True when it finished.

    The thread is not abandoned half-way: it goes on to finish (each HTTP call has
    its own EXCHANGE_REQUEST_TIMEOUT) and records what it found, so a slow
    Exchange still fills the snapshot for the next request.
    """

    def run() -> None:
        try:
            target()
        except Exception:
            log.exception("refresh round failed")
        finally:
            connections.close_all()  # this thread's own connections
            with _running_lock:
                _running.discard(thread)

    thread = threading.Thread(target=run, name="refresh", daemon=True)
    with _running_lock:
        _running.add(thread)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive()


# Rounds still running after their caller stopped waiting; each leaves when it ends,
# so a web worker that serves for months holds only the rounds in progress.
_running: set[threading.Thread] = set()
_running_lock = threading.Lock()


def running_in_background() -> int:
    """How many rounds are still running after their caller stopped waiting."""
    with _running_lock:
        return len(_running)


def join_background(timeout: float = 30.0) -> None:
    """Wait for refreshes still running after their caller stopped waiting (tests, shutdown)."""
    deadline = time.monotonic() + timeout
    with _running_lock:
        threads = list(_running)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


def refresh_calendars(
    calendars: Iterable[Calendar],
    *,
    now: dt.datetime | None = None,
    timeout: float | None = None,
) -> list[RefreshOutcome]:
    """Refresh the calendars in one round; one outcome per calendar, in the order given.

    With ``timeout`` the caller waits at most that long: calendars not done by
    then are reported (and recorded) as timed out while the round goes on.
    """
    calendars = list(calendars)
    now = now or timezone.now()
    done: dict[int, RefreshOutcome] = {}

    def round_() -> None:
        _run_round(calendars, now, done)

    if timeout is None:
        round_()
        return [done[calendar.pk] for calendar in calendars]
    finished = _in_thread(round_, timeout)
    outcomes = []
    for calendar in calendars:
        outcome = done.get(calendar.pk)  # the round owns ``done``; only read it here
        if outcome is None:
            assert not finished
            outcome = _failure(calendar, _timeout_error(timeout), time.monotonic() - timeout)
            record(calendar, outcome, now=now)
        outcomes.append(outcome)
    return outcomes


def refresh_calendar(
    calendar: Calendar, *, now: dt.datetime | None = None, timeout: float | None = None
) -> RefreshOutcome:
    return refresh_calendars([calendar], now=now, timeout=timeout)[0]


def feed_retry_at(calendar: Calendar, status: RefreshStatus | None) -> dt.datetime | None:
    """When feed requests may try Exchange again after failures; None when they may now.

    The wait doubles with each failure in a row, from FEED_RETRY_FIRST up to the
    calendar's period (a minute for a live calendar).
    """
    if status is None or not status.consecutive_failures or status.last_error_at is None:
        return None
    ceiling = dt.timedelta(seconds=max(calendar.cache_persistence, 60))
    doublings = min(status.consecutive_failures - 1, 16)
    return status.last_error_at + min(FEED_RETRY_FIRST * 2**doublings, ceiling)


def refresh_or_wait(calendar: Calendar, timeout: float) -> RefreshOutcome:
    """Refresh a stale calendar for a request that waits at most ``timeout`` seconds.

    When another request or worker is refreshing it already, that refresh is
    waited for (not repeated) and judged by what it recorded, unless the calendar
    has been failing: then the answer is what is known, at once.
    """
    started = timezone.now()
    status = RefreshStatus.objects.filter(calendar=calendar).first()
    retry_at = feed_retry_at(calendar, status)
    if status is not None and retry_at is not None and started < retry_at:
        # Exchange failed a moment ago: answer now with what is known (the last good
        # copy or the 502) and leave the next try to the back-off and the background.
        return RefreshOutcome(calendar.calendar_id, ok=False, error=status.last_error)
    outcome = refresh_calendar(calendar, timeout=timeout)
    if not outcome.skipped:
        return outcome
    if status is not None and status.consecutive_failures and status.last_error:
        # Someone is retrying a calendar that has been failing: one request waits for
        # that try, the others answer now, so a failing Exchange never holds every
        # thread of a web worker (and the healthy calendars behind them).
        return RefreshOutcome(calendar.calendar_id, ok=False, error=status.last_error)
    wait_for_release(calendar, timeout)
    status = RefreshStatus.objects.filter(calendar=calendar).first()
    ok = (
        status is not None
        and status.last_success is not None
        and status.last_success >= started - dt.timedelta(seconds=timeout)
        and status.consecutive_failures == 0
    )
    if ok:
        return RefreshOutcome(calendar.calendar_id, ok=True)
    error = "the refresh did not finish in time"
    if status is not None and status.consecutive_failures and status.last_error:
        error = status.last_error
    return RefreshOutcome(calendar.calendar_id, ok=False, error=error)


# --- what is due (the background dispatcher) ------------------------------------------

# Dispatch runs once a minute on django-q2's scheduler; a calendar due a few
# seconds after a dispatch would otherwise wait a whole extra minute.
DUE_SLACK = dt.timedelta(seconds=5)


def next_slot(previous: dt.datetime | None, period: dt.timedelta, now: dt.datetime) -> dt.datetime:
    """The next refresh time on the calendar's own grid of periods.

    Anchored to the previous slot (not to when the work ran) so that a late
    dispatch does not drift the schedule; slots missed while no worker ran are
    skipped, never caught up in a burst.
    """
    if previous is None:
        return now + period
    following = previous + period
    if following <= now:
        following = previous + ((now - previous) // period + 1) * period
    return following


def room_keys(calendar: Calendar) -> set[tuple[int, str, str]]:
    """Stand-in for the sources' upstream key: same server, same credentials, same room."""
    return {
        (calendar.server_id, calendar.username.lower(), resource.lower())
        for resource in resources_of(calendar)
    }


def _take(status: RefreshStatus, new: dt.datetime) -> bool:
    """Move next_refresh from what we read to ``new``; only one process can win."""
    return (
        RefreshStatus.objects.filter(pk=status.pk, next_refresh=status.next_refresh).update(
            next_refresh=new
        )
        == 1
    )


def claim_due(now: dt.datetime | None = None) -> list[Calendar]:
    """Claim every calendar whose background refresh is due, exactly once across workers.

    Calendars whose rooms are all being fetched anyway are claimed with them:
    a room is fetched once per the shortest period of the calendars showing it.
    Live calendars (cachePersistence 0) are refreshed by their feed requests.
    """
    now = now or timezone.now()
    missing = Calendar.objects.filter(refresh_status__isnull=True, cache_persistence__gt=0)
    RefreshStatus.objects.bulk_create(
        [RefreshStatus(calendar=calendar) for calendar in missing], ignore_conflicts=True
    )
    statuses = list(
        RefreshStatus.objects.filter(calendar__cache_persistence__gt=0)
        .select_related("calendar", "calendar__server")
        .prefetch_related("calendar__resources")
        .order_by("calendar__calendar_id")
    )
    claimed: list[Calendar] = []
    waiting: list[RefreshStatus] = []
    for status in statuses:
        period = dt.timedelta(seconds=status.calendar.cache_persistence)
        if status.next_refresh is None or status.next_refresh <= now + DUE_SLACK:
            if _take(status, next_slot(status.next_refresh, period, now)):
                claimed.append(status.calendar)
        else:
            waiting.append(status)
    fetched = set().union(*(room_keys(calendar) for calendar in claimed)) if claimed else set()
    for status in waiting:
        if room_keys(status.calendar) <= fetched:
            period = dt.timedelta(seconds=status.calendar.cache_persistence)
            if _take(status, now + period):
                claimed.append(status.calendar)
    return claimed
