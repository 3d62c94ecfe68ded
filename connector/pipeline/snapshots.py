"""Snapshots: the last good iCalendar of each calendar, swapped atomically.

A snapshot's ETag is a hash of its content; ``changed`` (the feed's
Last-Modified) moves only when the content differs, so players revalidating
with If-None-Match or If-Modified-Since get 304 until something really changes.
A snapshot built partly from last good room copies names those rooms
(``stale_rooms``), for the status page.
"""

from __future__ import annotations

import hashlib

from django.db import IntegrityError, transaction

from connector.models import Calendar, Snapshot
from connector.pipeline.build import BuildResult


def etag_of(ics: str) -> str:
    return '"' + hashlib.sha256(ics.encode("utf-8")).hexdigest()[:32] + '"'


def save_snapshot(calendar: Calendar, result: BuildResult) -> tuple[Snapshot, bool]:
    """Store the result as the calendar's snapshot; returns it and whether its content changed.

    A result older than the stored snapshot (two refreshes crossed) is not
    written: the feed never goes back in time.
    """
    etag = etag_of(result.ics)
    stale_rooms = [room.as_json() for room in result.stale_rooms]
    # The stored body is never read here: its ETag tells whether the content changed.
    stored = Snapshot.objects.select_for_update().only("generated", "etag")
    with transaction.atomic():
        current = stored.filter(calendar=calendar).first()
        if current is None:
            try:
                with transaction.atomic():
                    snapshot = Snapshot.objects.create(
                        calendar=calendar,
                        ics=result.ics,
                        etag=etag,
                        generated=result.generated,
                        changed=result.generated,
                        event_count=result.event_count,
                        stale_rooms=stale_rooms,
                    )
                return snapshot, True
            except IntegrityError:
                # Another process created it between our read and our insert.
                current = stored.get(calendar=calendar)
        if current.generated > result.generated:
            return current, False
        changed = current.etag != etag
        current.generated = result.generated
        current.stale_rooms = stale_rooms
        fields = ["generated", "stale_rooms"]
        if changed:
            current.ics = result.ics
            current.etag = etag
            current.changed = result.generated
            current.event_count = result.event_count
            fields += ["ics", "etag", "changed", "event_count"]
        current.save(update_fields=fields)
        return current, changed
