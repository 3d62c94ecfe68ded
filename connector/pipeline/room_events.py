"""The last good events of every (server, room), for honest outages room by room.

Each refresh round remembers what it read (``remember``): the records of every
room that answered, and since when each room that did not has been failing.
When one room of a calendar with sendCacheOnServerError fails while others
answer, the calendar is built from the fresh rooms plus the failing room's
last good copy (``last_good``), and its snapshot names the stale rooms.

A copy stands in for a room only when it covered the calendar's whole window
at the time it was read: a copy read for a calendar of one day must not make
the following days of a calendar of two weeks look free.

Writes are per round, not per room: new rooms in one INSERT, changed ones in
one UPDATE, unchanged ones (the usual case) only have their time moved.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from connector.core.errors import SourceError
from connector.core.records import EventRecord, Window
from connector.models import Calendar, RoomEvents

_FIELDS = tuple(item.name for item in fields(EventRecord))
_values = operator.attrgetter(*_FIELDS)
_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


# --- records as JSON ----------------------------------------------------------------


def _instant(value: dt.datetime | dt.date | None) -> Any:
    if isinstance(value, dt.datetime):
        return {"at": value.isoformat()}
    if isinstance(value, dt.date):
        return {"day": value.isoformat()}
    return None


def _from_instant(value: Any) -> dt.datetime | dt.date | None:
    if not value:
        return None
    if "at" in value:
        return dt.datetime.fromisoformat(value["at"])
    return dt.date.fromisoformat(value["day"])


def dump_records(records: Iterable[EventRecord]) -> str:
    """The records as JSON, their keys in the dataclass's order (the same text each time)."""
    rows = []
    for record in records:
        row = dict(zip(_FIELDS, _values(record), strict=True))
        row["start"] = _instant(record.start)
        row["end"] = _instant(record.end)
        row["last_modified"] = _instant(record.last_modified)
        row["categories"] = list(record.categories)
        row["extra"] = [list(pair) for pair in record.extra]
        rows.append(row)
    return _encoder.encode(rows)


def load_records(text: str) -> list[EventRecord]:
    records = []
    for row in json.loads(text) if text else []:
        values = {name: row[name] for name in _FIELDS if name in row}
        values["start"] = _from_instant(row["start"])
        values["end"] = _from_instant(row["end"])
        values["last_modified"] = _from_instant(row.get("last_modified"))
        values["categories"] = tuple(row.get("categories", ()))
        values["extra"] = tuple(tuple(pair) for pair in row.get("extra", ()))
        records.append(EventRecord(**values))
    return records


# --- the copies -----------------------------------------------------------------------


@dataclass(frozen=True)
class RoomCopy:
    """A room's last good events, and how long it has been failing."""

    address: str
    records: list[EventRecord]
    window: Window
    fetched_at: dt.datetime
    failing_since: dt.datetime | None

    def covers(self, calendar: Calendar) -> bool:
        """Did it hold the calendar's whole window when it was read?"""
        needed = calendar.window(self.fetched_at)
        return self.window.start <= needed.start and self.window.end >= needed.end


@dataclass(frozen=True)
class RoomRead:
    """What a round learned about one room of one server."""

    server_id: int
    address: str
    answer: list[EventRecord] | SourceError
    window: Window


def key_of(address: str) -> str:
    return address.strip().lower()


def remember(reads: Iterable[RoomRead], now: dt.datetime) -> None:
    """Keep the records of the rooms that answered; note since when the others fail.

    The account's own calendar (no address) has no copy: it is no room.
    """
    wanted: dict[tuple[int, str], RoomRead] = {}
    for read in reads:
        if read.address:
            wanted[(read.server_id, key_of(read.address))] = read
    if not wanted:
        return
    by_server: dict[int, list[str]] = {}
    for server_id, address in wanted:
        by_server.setdefault(server_id, []).append(address)
    existing = {
        (row.server_id, row.address): row
        for server_id, addresses in by_server.items()
        for row in RoomEvents.objects.filter(server_id=server_id, address__in=addresses).only(
            "pk", "server_id", "address", "digest", "failing_since"
        )
    }
    created: list[RoomEvents] = []
    changed: list[RoomEvents] = []
    unchanged: list[RoomEvents] = []
    failed: list[RoomEvents] = []
    for key, read in wanted.items():
        row = existing.get(key)
        if isinstance(read.answer, SourceError):
            error = read.answer
            if row is None:
                created.append(
                    RoomEvents(
                        server_id=key[0],
                        address=key[1],
                        failing_since=now,
                        last_error=error.message,
                        last_error_hint=error.hint,
                        last_error_code=error.code,
                    )
                )
                continue
            row.failing_since = row.failing_since or now
            row.last_error, row.last_error_hint = error.message, error.hint
            row.last_error_code = error.code
            failed.append(row)
            continue
        text = dump_records(read.answer)
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        values = {
            "window_start": read.window.start,
            "window_end": read.window.end,
            "fetched_at": now,
        }
        if row is None:
            created.append(
                RoomEvents(server_id=key[0], address=key[1], records=text, digest=digest, **values)
            )
            continue
        for name, value in values.items():
            setattr(row, name, value)
        if row.digest == digest and row.failing_since is None:
            unchanged.append(row)
            continue
        row.records, row.digest, row.failing_since = text, digest, None
        row.last_error = row.last_error_hint = row.last_error_code = ""
        changed.append(row)
    if created:
        RoomEvents.objects.bulk_create(created, ignore_conflicts=True)
    errors = ["failing_since", "last_error", "last_error_hint", "last_error_code"]
    if changed:
        fresh = ["records", "digest", "window_start", "window_end", "fetched_at"]
        RoomEvents.objects.bulk_update(changed, fresh + errors, batch_size=200)
    # Unchanged rooms (the usual case) only had their window and time moved, the same
    # for most rooms of a round: one UPDATE per window, not bulk_update's CASE per row.
    by_window: dict[tuple[Any, Any], list[int]] = {}
    for row in unchanged:
        by_window.setdefault((row.window_start, row.window_end), []).append(row.pk)
    for (start, end), pks in by_window.items():
        for first in range(0, len(pks), 500):
            RoomEvents.objects.filter(pk__in=pks[first : first + 500]).update(
                window_start=start, window_end=end, fetched_at=now
            )
    if failed:
        RoomEvents.objects.bulk_update(failed, errors, batch_size=500)


def last_good(server_id: int, addresses: Iterable[str]) -> Mapping[str, RoomCopy]:
    """The last good copies of these rooms of a server, by lower-cased address."""
    keys = {key_of(address) for address in addresses if address}
    rows = RoomEvents.objects.filter(
        server_id=server_id, address__in=keys, fetched_at__isnull=False
    )
    copies = {}
    for row in rows:
        if row.window_start is None or row.window_end is None or row.fetched_at is None:
            continue
        copies[row.address] = RoomCopy(
            address=row.address,
            records=load_records(row.records),
            window=Window(row.window_start, row.window_end),
            fetched_at=row.fetched_at,
            failing_since=row.failing_since,
        )
    return copies
