"""The feed's one read: what serving a fresh snapshot needs, and nothing more.

Players poll every few minutes, and a fresh feed must cost what its bytes
cost as a static file (issue 13). The ORM's query for the calendar, its
server and its snapshot compiles its SQL on every request and builds three
model objects; here the SQL is written once and one row comes back with the
columns the answer needs. The snapshot's text (the body) is selected only
when the answer may need it: a conditional GET reads the ETag and
Last-Modified first, so a 304 never reads the body.

A calendar whose snapshot is missing or stale goes the ORM's way
(connector/views/feed.py), where a refresh needs the whole calendar anyway.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cache
from typing import TypeVar

from django.db import connection, models
from django.utils.dateparse import parse_datetime

from connector.models import Calendar, Snapshot

M = TypeVar("M", Calendar, Snapshot)

_CALENDAR_FIELDS = (
    "id",
    "calendar_id",
    "feed_key",
    "cache_persistence",
    "timezone",
    "request_window",
    "send_cache_on_server_error",
)
_SNAPSHOT_FIELDS = ("etag", "generated", "changed")


@dataclass(frozen=True)
class FeedRow:
    """A calendar as its feed reads it; ``snapshot`` is None when it has none."""

    calendar: Calendar  # only the fields of _CALENDAR_FIELDS are loaded
    snapshot: Snapshot | None  # etag, generated, changed; ics only when asked for


def _column(model: type[Calendar] | type[Snapshot], name: str) -> str:
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field) and field.column, name
    return connection.ops.quote_name(field.column)


@cache
def _sql(with_body: bool) -> str:
    calendar, snapshot = Calendar._meta, Snapshot._meta
    quote = connection.ops.quote_name
    columns = [f"c.{_column(Calendar, name)}" for name in _CALENDAR_FIELDS]
    columns += [f"s.{_column(Snapshot, name)}" for name in _SNAPSHOT_FIELDS]
    if with_body:
        columns.append(f"s.{_column(Snapshot, 'ics')}")
    # Names from the models' own metadata, quoted; the id is a parameter.
    return (
        f"SELECT {', '.join(columns)} FROM {quote(calendar.db_table)} c "  # noqa: S608
        f"LEFT JOIN {quote(snapshot.db_table)} s "
        f"ON s.{_column(Snapshot, 'calendar')} = c.{_column(Calendar, 'id')} "
        f"WHERE c.{_column(Calendar, 'calendar_id')} = %s"
    )


def _aware(value: object) -> dt.datetime:
    """A timestamp as the database gives it (SQLite: text in UTC) as an aware datetime."""
    if isinstance(value, str):
        parsed = parse_datetime(value)
        assert parsed is not None, value
        value = parsed
    assert isinstance(value, dt.datetime), value
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def read_feed(calendar_id: str, *, with_body: bool) -> FeedRow | None:
    """One query: the calendar and its snapshot (the body only ``with_body``)."""
    with connection.cursor() as cursor:
        cursor.execute(_sql(with_body), [calendar_id])
        found = cursor.fetchone()
    if found is None:
        return None
    values = dict(zip(_CALENDAR_FIELDS, found, strict=False))
    # SQLite gives 0 or 1.
    values["send_cache_on_server_error"] = bool(values["send_cache_on_server_error"])
    calendar = _loaded(Calendar, values)
    etag, generated, changed = found[len(_CALENDAR_FIELDS) : len(_CALENDAR_FIELDS) + 3]
    if etag is None:
        return FeedRow(calendar, None)
    snapshot_values = {
        "calendar_id": calendar.pk,
        "etag": etag,
        "generated": _aware(generated),
        "changed": _aware(changed),
    }
    if with_body:
        snapshot_values["ics"] = found[-1]
    return FeedRow(calendar, _loaded(Snapshot, snapshot_values))


def _loaded(model: type[M], values: dict[str, object]) -> M:
    """A model object as the ORM loads it: the other fields deferred (read on access),
    not given their defaults. from_db takes the values in the model's field order."""
    names = [field.attname for field in model._meta.concrete_fields if field.attname in values]
    return model.from_db(connection.alias, names, [values[name] for name in names])


def read_body(calendar_pk: int, etag: str) -> str | None:
    """The snapshot's text, if it still has this ETag (None: it changed meanwhile)."""
    found = (
        Snapshot.objects.filter(calendar_id=calendar_pk, etag=etag)
        .values_list("ics", flat=True)
        .first()
    )
    return found
