"""State kept by refreshes: snapshots, refresh outcomes, what connections learned."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from django.db import models

from connector.models.calendars import Calendar
from connector.models.servers import Server


def is_fresh(
    generated: dt.datetime, now: dt.datetime, cache_persistence: int, tz: zoneinfo.ZoneInfo
) -> bool:
    """A snapshot made at ``generated`` may be served at ``now``: younger than
    ``cache_persistence`` seconds, and of the same day in the calendar's zone (the
    calendar's window starts at 00:00 of that day, so a new day needs new data)."""
    if cache_persistence <= 0:
        return False
    age = (now - generated).total_seconds()
    if age >= cache_persistence or age < -60:
        return False
    return generated.astimezone(tz).date() == now.astimezone(tz).date()


class Snapshot(models.Model):
    """The last good iCalendar of a calendar; replaced atomically by each refresh."""

    calendar = models.OneToOneField(Calendar, on_delete=models.CASCADE, related_name="snapshot")
    ics = models.TextField()
    etag = models.CharField(max_length=100)
    generated = models.DateTimeField(help_text="When the data was fetched from the source.")
    changed = models.DateTimeField(help_text="When the content last changed (Last-Modified).")
    event_count = models.IntegerField(default=0)
    # Rooms that failed in the refresh that wrote this snapshot and are shown from their
    # last good events (sendCacheOnServerError): [{"address", "failing_since",
    # "fetched_at", "error"}], times in ISO 8601. Empty: every room is fresh.
    stale_rooms = models.JSONField(default=list, blank=True)

    class Meta:
        indexes = [
            # The feed reads these four for every request (connector/services/feeds.py).
            # SQLite stores ``ics`` before them in the row, so reading them from the
            # table walks the body's overflow pages; this index answers without the row.
            models.Index(
                fields=["calendar", "etag", "generated", "changed"], name="snapshot_validators"
            ),
        ]

    def __str__(self) -> str:
        return f"snapshot of {self.calendar_id}"

    def is_fresh(self, calendar: Calendar, now: dt.datetime) -> bool:
        """Younger than cachePersistence, and of today's window (a new day needs new data)."""
        return is_fresh(self.generated, now, calendar.cache_persistence, calendar.tzinfo)

    def age_seconds(self, now: dt.datetime) -> float:
        return max(0.0, (now - self.generated).total_seconds())


class RefreshStatus(models.Model):
    """The outcome of the last refresh of a calendar, beside its last good snapshot."""

    calendar = models.OneToOneField(
        Calendar, on_delete=models.CASCADE, related_name="refresh_status"
    )
    last_attempt = models.DateTimeField(null=True, blank=True)
    last_success = models.DateTimeField(null=True, blank=True)
    last_duration = models.FloatField(null=True, blank=True, help_text="seconds")
    last_error = models.TextField(blank=True)
    last_error_hint = models.TextField(blank=True)
    last_error_code = models.CharField(max_length=100, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.IntegerField(default=0)
    next_refresh = models.DateTimeField(null=True, blank=True)
    # Claimed by whoever is refreshing right now, so that concurrent feed requests and
    # workers wait for that refresh instead of all asking Exchange at once.
    refreshing_until = models.DateTimeField(null=True, blank=True, editable=False)
    # Who holds the claim ("host:pid:start"): a claim of a process that is gone is taken
    # over at once instead of blocking feeds until it expires.
    refreshing_by = models.CharField(max_length=300, blank=True, editable=False)

    class Meta:
        verbose_name_plural = "refresh statuses"

    def __str__(self) -> str:
        return f"refresh status of {self.calendar_id}"


class RoomEvents(models.Model):
    """The last good events of one room of one server, and whether it is failing now.

    Written by every refresh round for every room it read: a calendar with
    sendCacheOnServerError whose room fails is built from its other rooms' fresh
    events plus this copy (connector/pipeline/room_events.py).
    """

    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="room_events")
    address = models.CharField(max_length=500, help_text="The room's SMTP address, lower-cased.")
    records = models.TextField(blank=True, help_text="The events, as JSON; empty: none yet.")
    digest = models.CharField(max_length=64, blank=True, help_text="SHA-256 of records.")
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField(null=True, blank=True)
    fetched_at = models.DateTimeField(
        null=True, blank=True, help_text="When the records were read; empty: never."
    )
    failing_since = models.DateTimeField(
        null=True, blank=True, help_text="First failure since the last good read; empty: ok."
    )
    last_error = models.TextField(blank=True)
    last_error_hint = models.TextField(blank=True)
    last_error_code = models.CharField(max_length=100, blank=True)

    class Meta:
        verbose_name_plural = "room events"
        constraints = [
            models.UniqueConstraint(fields=["server", "address"], name="room_events_once"),
        ]

    def __str__(self) -> str:
        return f"{self.server_id}:{self.address}"


class MailboxState(models.Model):
    """What EWS taught us about one mailbox of one server (its calendar folder id)."""

    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="mailbox_states")
    mailbox = models.CharField(
        max_length=500, help_text="SMTP address; empty for the account's own"
    )
    folder_id = models.TextField(blank=True)
    change_key = models.TextField(blank=True)
    etag = models.CharField(max_length=200, blank=True, help_text="ICS sources: ETag of the origin")
    last_modified = models.CharField(max_length=100, blank=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["server", "mailbox"], name="mailbox_state_once"),
        ]

    def __str__(self) -> str:
        return f"{self.server_id}:{self.mailbox}"


class GraphDeltaState(models.Model):
    """Where Graph's change tracking of one room's calendar view stands.

    One row per (server, mailbox, window): the ``@odata.deltaLink`` that ended
    the last round of ``calendarView/delta`` and the room's events after it, as
    compact JSON (only what an event record needs), zlib-compressed. The next
    refresh sends the deltaLink and applies what changed; a new window (a new
    day) starts a new round. Rebuilt from Graph whenever lost, so it holds
    nothing that is not in Exchange.
    """

    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="graph_deltas")
    mailbox = models.CharField(max_length=500, help_text="SMTP address of the room, lower case")
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    reader = models.CharField(
        max_length=600, help_text="Who read it: the base URI and app registration"
    )
    delta_link = models.TextField()
    with_bodies = models.BooleanField(default=False)
    events = models.BinaryField(help_text="zlib-compressed JSON: item id -> event")
    event_count = models.IntegerField(default=0)
    seeded = models.DateTimeField(help_text="When the round started from scratch")
    updated = models.DateTimeField(help_text="When a refresh last used it")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["server", "mailbox", "window_start", "window_end"],
                name="graph_delta_once_per_window",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.server_id}:{self.mailbox} from {self.window_start:%Y-%m-%d}"


class WorkerHeartbeat(models.Model):
    """Written by each background worker so that pages can tell it is alive."""

    name = models.CharField(max_length=200, unique=True)
    seen = models.DateTimeField()
    pid = models.IntegerField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name


class RefusedHost(models.Model):
    """A host name players used that ALLOWED_HOSTS does not list, for /status/ to show."""

    name = models.CharField(max_length=255, unique=True)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    count = models.IntegerField(default=0)

    def __str__(self) -> str:
        return self.name


class Milestone(models.Model):
    """Something that happened once on this site, and when (the first-run guide reads it).

    ``first-feed``: a player (or anyone allowed) got a calendar's feed with 200 for the
    first time; until then the admin's home page shows the steps to get there.
    """

    FIRST_FEED = "first-feed"

    name = models.CharField(max_length=50, unique=True)
    reached = models.DateTimeField()
    detail = models.CharField(max_length=200, blank=True)

    def __str__(self) -> str:
        return self.name
