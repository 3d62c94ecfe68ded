"""Graph's change tracking of a room's calendar view, kept in the database between refreshes.

Each refresh runs as a new process (the command) or in a worker, so what the
last round of ``calendarView/delta`` left, its ``@odata.deltaLink`` and the
room's events, lives in ``GraphDeltaState``, one row per (server, mailbox,
window). Losing it costs one full read, never a wrong feed: a row that does
not decode, or was read by another app or base URI, is as good as none.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, transaction
from django.db.models import Q
from django.utils import timezone

from connector.models import GraphDeltaState
from connector.sources.graph.mapping import compact

if TYPE_CHECKING:
    from connector.core.records import Window
    from connector.models import Server

log = logging.getLogger(__name__)

KEEP_UNUSED = dt.timedelta(days=2)  # rows of other windows no refresh used for this long go


class Inconsistent(Exception):
    """A delta answer that cannot be applied to what is kept: read the room again."""


@dataclass
class Kept:
    """One room's tracked calendar view, as the last round left it."""

    pk: int
    delta_link: str
    events: dict[str, dict[str, Any]]  # item id -> compact event
    with_bodies: bool


def load(server: Server, mailbox: str, window: Window, reader: str) -> Kept | None:
    """What the last round left for this room and window, or None to start from scratch."""
    try:
        row = GraphDeltaState.objects.filter(
            server=server,
            mailbox=mailbox.lower(),
            window_start=window.start,
            window_end=window.end,
        ).first()
    except DatabaseError:
        log.warning("graph delta state of %s unreadable; reading in full", mailbox, exc_info=True)
        return None
    if row is None or row.reader != reader or not row.delta_link:
        return None
    try:
        events = json.loads(zlib.decompress(bytes(row.events)))
    except (zlib.error, ValueError, TypeError):
        log.warning("graph delta state of %s does not decode; reading in full", mailbox)
        return None
    if not isinstance(events, dict) or not all(isinstance(e, dict) for e in events.values()):
        return None
    return Kept(row.pk, row.delta_link, events, row.with_bodies)


def apply(
    events: dict[str, dict[str, Any]], items: list[dict[str, Any]], *, with_bodies: bool
) -> dict[str, dict[str, Any]]:
    """The events after a delta answer's items: added, changed (merged) or ``@removed``."""
    merged = dict(events)
    for item in items:
        item_id = item.get("id") if isinstance(item, dict) else None
        if not isinstance(item_id, str) or not item_id:
            raise Inconsistent("an item without an id")
        if "@removed" in item:
            # Deleted, or (the docs warn) changed outside the window: gone from it either way.
            merged.pop(item_id, None)
            continue
        event = {**merged.get(item_id, {}), **compact(item, with_body=with_bodies)}
        if not isinstance(event.get("start"), dict) or not isinstance(event.get("end"), dict):
            raise Inconsistent(f"item {item_id[:12]}... has no start or end")
        merged[item_id] = event
    return merged


def save(
    server: Server,
    mailbox: str,
    window: Window,
    *,
    reader: str,
    delta_link: str,
    events: dict[str, dict[str, Any]],
    with_bodies: bool,
    previous: Kept | None,
) -> None:
    """Keep the round's deltaLink (and, when they changed, the events) for the next refresh.

    With ``previous`` (a round from its deltaLink), an answer without changes
    writes only the new link, and only if no other process moved the row on
    meanwhile. Best effort: a failed write costs a full read next time.
    """
    mailbox = mailbox.lower()
    now = timezone.now()
    try:
        with transaction.atomic():
            if previous is not None and events == previous.events:
                GraphDeltaState.objects.filter(
                    pk=previous.pk, delta_link=previous.delta_link
                ).update(delta_link=delta_link, updated=now)
                return
            blob = zlib.compress(json.dumps(events, separators=(",", ":")).encode())
            values = {
                "reader": reader,
                "delta_link": delta_link,
                "with_bodies": with_bodies,
                "events": blob,
                "event_count": len(events),
                "updated": now,
            }
            GraphDeltaState.objects.update_or_create(
                server=server,
                mailbox=mailbox,
                window_start=window.start,
                window_end=window.end,
                defaults={**values, **({} if previous is not None else {"seeded": now})},
                create_defaults={**values, "seeded": now},
            )
            if previous is None:
                # A new round: the rows of past windows (yesterday's) are of no more use.
                GraphDeltaState.objects.filter(server=server, mailbox=mailbox).filter(
                    Q(window_end__lte=now) | Q(updated__lt=now - KEEP_UNUSED)
                ).exclude(window_start=window.start, window_end=window.end).delete()
    except DatabaseError:
        log.warning("graph delta state of %s not saved", mailbox, exc_info=True)
