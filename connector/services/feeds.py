"""The feed's hot path: one small read, and the body from this process's memory.

Players poll every few minutes, and a fresh feed must cost what its bytes cost
as a static file (docs/PERFORMANCE.md). A request reads one small
row (``read_state``): the calendar's access and freshness columns and its
snapshot's validators (ETag, generated, changed), never the snapshot's text.
A 304 needs nothing more. A 200 takes the encoded body from a per-process
cache keyed by (calendar, ETag) (``body``); the ETag is a hash of the content
(connector/pipeline/snapshots.py), so a cached body is the content the
database row names, and a snapshot another process wrote has another ETag:
it is read once, then cached in its turn. The cache holds one body per
calendar (the current one) and at most FEED_CACHE_MB per process, the bodies
cached longest ago going first.

On SQLite the two statements run on the connection Django keeps for the
process (CONN_MAX_AGE), straight through sqlite3, which keeps them prepared
(its statement cache is keyed by the SQL text); Django's cursor wrappers
cost more than the read. Other databases go through Django's cursor.

A calendar whose snapshot is missing or stale goes the ORM's way
(connector/views/feed.py), where a refresh needs the whole calendar anyway.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
import zoneinfo
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, models
from django.utils.dateparse import parse_datetime
from django.utils.http import http_date

from connector.models import Calendar, Snapshot
from connector.models.state import is_fresh

VALIDATORS_INDEX = (
    "snapshot_validators"  # Snapshot.Meta.indexes: calendar, etag, generated, changed
)
_CALENDAR_FIELDS = (
    "id",
    "calendar_id",
    "feed_key",
    "cache_persistence",
    "timezone",
    "send_cache_on_server_error",
)


@dataclass(frozen=True, slots=True)
class Validators:
    """A snapshot as a request sees it without its body."""

    etag: str
    generated: dt.datetime
    changed: dt.datetime  # Last-Modified
    last_modified: int  # changed, in whole seconds since the epoch
    last_modified_http: str  # changed as an HTTP date


@dataclass(frozen=True, slots=True)
class FeedState:
    """A calendar as its feed reads it; ``snapshot`` is None when it has none."""

    pk: int
    calendar_id: str
    feed_key: str
    cache_persistence: int
    timezone: str
    send_cache_on_server_error: bool
    snapshot: Validators | None

    def is_fresh(self, now: dt.datetime) -> bool:
        """As Snapshot.is_fresh: young enough, and of today's window."""
        if self.snapshot is None:
            return False
        zone = _zone(self.timezone or settings.TIME_ZONE)
        return is_fresh(self.snapshot.generated, now, self.cache_persistence, zone)

    @classmethod
    def of(cls, calendar: Calendar, snapshot: Snapshot | None) -> FeedState:
        """The state of ORM objects (the refresh's way)."""
        return cls(
            pk=calendar.pk,
            calendar_id=calendar.calendar_id,
            feed_key=calendar.feed_key,
            cache_persistence=calendar.cache_persistence,
            timezone=calendar.timezone,
            send_cache_on_server_error=calendar.send_cache_on_server_error,
            snapshot=None
            if snapshot is None
            else _validators(snapshot.etag, snapshot.generated, snapshot.changed),
        )


@functools.cache
def _zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def _column(model: type[Calendar] | type[Snapshot], name: str) -> str:
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field) and field.column, name
    return connection.ops.quote_name(field.column)


@functools.cache
def _sql(name: str, vendor: str) -> str:
    """The statements of this module, from the models' own metadata (quoted names)."""
    quote = connection.ops.quote_name
    calendars, snapshots = quote(Calendar._meta.db_table), quote(Snapshot._meta.db_table)
    snapshot_calendar = _column(Snapshot, "calendar")
    placeholder = "?" if vendor == "sqlite" else "%s"
    if name == "state":
        columns = [f"c.{_column(Calendar, field)}" for field in _CALENDAR_FIELDS]
        columns.append(f"s.{_column(Snapshot, 'etag')}")
        # As text: the timestamps are parsed once per value (_moment), not per row.
        columns += [
            f"CAST(s.{_column(Snapshot, field)} AS TEXT)" for field in ("generated", "changed")
        ]
        # SQLite's planner picks the unique index of snapshot.calendar, then reads the
        # row, whose body stands before the validators; the covering index does not.
        indexed = f" INDEXED BY {quote(VALIDATORS_INDEX)}" if vendor == "sqlite" else ""
        return (
            f"SELECT {', '.join(columns)} FROM {calendars} c "  # noqa: S608
            f"LEFT JOIN {snapshots} s{indexed} "
            f"ON s.{snapshot_calendar} = c.{_column(Calendar, 'id')} "
            f"WHERE c.{_column(Calendar, 'calendar_id')} = {placeholder}"
        )
    assert name == "body", name
    return (
        f"SELECT {_column(Snapshot, 'ics')} FROM {snapshots} "  # noqa: S608
        f"WHERE {snapshot_calendar} = {placeholder} AND {_column(Snapshot, 'etag')} = {placeholder}"
    )


def _one(name: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """One row of one of this module's statements."""
    database = connections[DEFAULT_DB_ALIAS]  # one lookup of this thread's connection
    sql = _sql(name, database.vendor)
    if database.vendor == "sqlite":
        if database.connection is None:
            database.ensure_connection()  # kept for the process (CONN_MAX_AGE)
        found = database.connection.execute(sql, params).fetchone()
    else:
        with database.cursor() as cursor:
            cursor.execute(sql, params)
            found = cursor.fetchone()
    return None if found is None else tuple(found)


@functools.lru_cache(maxsize=4096)
def _moment(value: str | dt.datetime) -> dt.datetime:
    """A timestamp as the database gives it as text (SQLite: UTC, without zone)."""
    parsed = parse_datetime(value) if isinstance(value, str) else value
    assert parsed is not None, value
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


@functools.lru_cache(maxsize=4096)
def _validators(etag: str, generated: str | dt.datetime, changed: str | dt.datetime) -> Validators:
    moment = _moment(changed)
    seconds = int(moment.timestamp())
    return Validators(etag, _moment(generated), moment, seconds, http_date(seconds))


def read_state(calendar_id: str) -> FeedState | None:
    """One query: the calendar's access and freshness columns and its snapshot's
    validators, without the snapshot's text."""
    found = _one("state", (calendar_id,))
    if found is None:
        return None
    pk, name, feed_key, cache_persistence, zone, send_cache, etag, generated, changed = found
    return FeedState(
        pk=pk,
        calendar_id=name,
        feed_key=feed_key,
        cache_persistence=cache_persistence,
        timezone=zone,
        send_cache_on_server_error=bool(send_cache),  # SQLite gives 0 or 1
        snapshot=None if etag is None else _validators(etag, generated, changed),
    )


# --- the bodies this process serves -------------------------------------------------

_bodies: dict[int, tuple[str, bytes]] = {}  # calendar pk → (ETag, encoded body), oldest first
_cached_bytes = [0]
_lock = threading.Lock()  # writers only; a read is one dict lookup


def body(state: FeedState) -> bytes | None:
    """The encoded body of the state's snapshot; None when the database has moved on
    to another snapshot since ``state`` was read (read the state again)."""
    assert state.snapshot is not None
    etag = state.snapshot.etag
    cached = _bodies.get(state.pk)
    if cached is not None and cached[0] == etag:
        return cached[1]
    found = _one("body", (state.pk, etag))
    if found is None:
        return None
    encoded = str(found[0]).encode("utf-8")
    remember(state.pk, etag, encoded)
    return encoded


def remember(calendar_pk: int, etag: str, encoded: bytes) -> None:
    """Keep a body for the next requests (the one of this calendar it replaces goes)."""
    limit = settings.FEED_CACHE_MB * 1024 * 1024
    with _lock:
        old = _bodies.pop(calendar_pk, None)
        if old is not None:
            _cached_bytes[0] -= len(old[1])
        if len(encoded) > limit:
            return
        while _bodies and _cached_bytes[0] + len(encoded) > limit:
            _, dropped = _bodies.pop(next(iter(_bodies)))
            _cached_bytes[0] -= len(dropped)
        _bodies[calendar_pk] = (etag, encoded)
        _cached_bytes[0] += len(encoded)


def cached_bytes() -> int:
    """How many body bytes this process keeps."""
    return _cached_bytes[0]


def forget() -> None:
    """Drop the cached bodies (tests start as a new process would)."""
    with _lock:
        _bodies.clear()
        _cached_bytes[0] = 0
