"""Who is fetching: the last player fetches of each calendar.

A site moving players over wants to see which screens still ask, from where,
and what they got. Recording must not cost the feed a write per request:
each process writes a (calendar id, client address) pair at most once a
minute (an in-process throttle), and that write is one upsert keyed by the
pair, so several gunicorn workers writing the same pair leave one row.
The feed view records after the response is sent (connector/views/feed.py).

Fetches of ids that name no calendar (404) are kept too, bounded: at most
UNKNOWN_WRITES_PER_MINUTE new writes a minute per process, and a prune (at
most hourly, riding on a write) keeps the newest UNKNOWN_KEPT of them and
forgets every fetch older than KEPT_FOR.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import DatabaseError
from django.utils import timezone

from connector.models import FeedFetch

WRITE_EVERY = 60.0  # seconds between two writes of one (calendar id, client), per process
SHOWN_PER_CALENDAR = 5  # the newest fetches last_fetches() returns per calendar
KEPT_FOR = dt.timedelta(days=30)
UNKNOWN_KEPT = 100  # fetches of ids that name no calendar, newest first
UNKNOWN_WRITES_PER_MINUTE = 10
PRUNE_EVERY = 3600.0
_THROTTLE_MAX = 10_000  # pairs remembered per process before the old ones are dropped

_written: dict[tuple[str, str], float] = {}
_unknown_writes: list[float] = []
_last_prune = [time.monotonic()]  # the first prune an hour after start
_lock = threading.Lock()


@dataclass(frozen=True)
class FetchRecord:
    """One recorded player fetch (plain data for pages)."""

    calendar_id: str
    path: str
    client: str
    user_agent: str
    status: int
    at: dt.datetime

    def describe(self, now: dt.datetime | None = None) -> str:
        return describe_fetch(self, now)


def ago_text(seconds: float) -> str:
    """'just now', '2 minutes ago', '1 hour ago', '3 days ago'."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return "just now" if seconds < 10 else f"{seconds} seconds ago"
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'} ago"
    return "just now"  # unreachable: seconds >= 60 matched "minute"


def describe_fetch(record: FetchRecord, now: dt.datetime | None = None) -> str:
    """'players fetched /ical/lobby.ics 2 minutes ago from 10.0.0.5 (status 200)'."""
    now = now or timezone.now()
    when = ago_text((now - record.at).total_seconds())
    return f"players fetched {record.path} {when} from {record.client} (status {record.status})"


def _clean(text: str, limit: int) -> str:
    return "".join(char for char in text if char.isprintable())[:limit]


def _due(key: tuple[str, str], known: bool, now: float) -> bool:
    """Whether this process should write the pair now (and remember that it did)."""
    with _lock:
        if now - _written.get(key, float("-inf")) < WRITE_EVERY:
            return False
        if not known:
            while _unknown_writes and now - _unknown_writes[0] >= 60.0:
                _unknown_writes.pop(0)
            if len(_unknown_writes) >= UNKNOWN_WRITES_PER_MINUTE:
                return False
            _unknown_writes.append(now)
        if len(_written) >= _THROTTLE_MAX:
            for old in [item for item, at in _written.items() if now - at >= WRITE_EVERY]:
                del _written[old]
            if len(_written) >= _THROTTLE_MAX:
                _written.clear()
        _written[key] = now
        return True


def record_fetch(
    calendar_id: str, *, client: str, path: str, user_agent: str, status: int, known: bool = True
) -> bool:
    """Remember a player fetch; True when this call wrote (at most once a minute per pair)."""
    now = time.monotonic()
    # Most calls: a pair written less than a minute ago, found by one dict lookup,
    # without the lock (a race only sends a caller on to _due, which decides).
    if now - _written.get((calendar_id, client), float("-inf")) < WRITE_EVERY:
        return False
    calendar_id = _clean(calendar_id, 100)
    client = _clean(client, 100)
    if not _due((calendar_id, client), known, now):
        return False
    row = FeedFetch(
        calendar_id=calendar_id,
        client=client,
        path=_clean(path, 300),
        user_agent=_clean(user_agent, 300),
        status=status,
        at=timezone.now(),
        known=known,
    )
    try:
        # One statement (INSERT ... ON CONFLICT DO UPDATE) on SQLite and PostgreSQL.
        FeedFetch.objects.bulk_create(
            [row],
            update_conflicts=True,
            unique_fields=["calendar_id", "client"],
            update_fields=["path", "user_agent", "status", "at", "known"],
        )
        _prune_now_and_then()
    except DatabaseError:
        return False  # a feed must never fail for its bookkeeping
    return True


def _prune_now_and_then() -> None:
    now = time.monotonic()
    with _lock:
        if now - _last_prune[0] < PRUNE_EVERY:
            return
        _last_prune[0] = now
    FeedFetch.objects.filter(at__lt=timezone.now() - KEPT_FOR).delete()
    keep = FeedFetch.objects.filter(known=False).order_by("-at").values("pk")[:UNKNOWN_KEPT]
    FeedFetch.objects.filter(known=False).exclude(pk__in=list(keep)).delete()


def _record(row: FeedFetch) -> FetchRecord:
    return FetchRecord(
        calendar_id=row.calendar_id,
        path=row.path,
        client=row.client,
        user_agent=row.user_agent,
        status=row.status,
        at=row.at,
    )


def last_fetches(calendar_ids: Iterable[str]) -> dict[str, list[FetchRecord]]:
    """The newest fetches of each calendar id, newest first; [] means never fetched."""
    wanted = list(dict.fromkeys(calendar_ids))
    found: dict[str, list[FetchRecord]] = {calendar_id: [] for calendar_id in wanted}
    rows = FeedFetch.objects.filter(calendar_id__in=wanted).order_by("-at", "client")
    for row in rows.iterator():
        shown = found[row.calendar_id]
        if len(shown) < SHOWN_PER_CALENDAR:
            shown.append(_record(row))
    return found


def unknown_fetches(limit: int = 20) -> list[FetchRecord]:
    """Fetches of ids that name no calendar (404), newest first."""
    rows = FeedFetch.objects.filter(known=False).order_by("-at")[:limit]
    return [_record(row) for row in rows]


def forget() -> None:
    """Forget what this process wrote (tests start as a new process would)."""
    with _lock:
        _written.clear()
        _unknown_writes.clear()
        _last_prune[0] = time.monotonic()
