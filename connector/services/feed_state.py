"""What players get right now from each calendar's feed, in plain words.

One vocabulary for the status page, the console and the admin:

- ``fresh``: the last refresh read every room;
- ``partly-stale``: some rooms answered, one or more failed and are shown from
  their last good events (sendCacheOnServerError): which rooms, since when;
- ``last-good``: the last refresh failed and players get the last good copy,
  from when;
- ``502``: the last refresh failed and players get an error (no
  sendCacheOnServerError, or nothing good was ever read);
- ``none``: nothing read yet; the first player request (or the worker) reads it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.utils import timezone

from connector.models import Calendar, RefreshStatus, Snapshot
from connector.pipeline.build import StaleRoom

# The CSS class (``status status-<class>``) of each state, in the status page's colours.
CSS = {
    "fresh": "ok",
    "partly-stale": "expiring",
    "last-good": "stale",
    "502": "failing",
    "none": "new",
}


@dataclass(frozen=True)
class FeedState:
    state: str  # fresh | partly-stale | last-good | 502 | none
    text: str  # what players get, in plain words
    copy_from: dt.datetime | None = None  # when the data served was read
    stale_rooms: tuple[StaleRoom, ...] = ()

    @property
    def css(self) -> str:
        return CSS[self.state]


def _when(value: dt.datetime) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M")


def _failing(refresh: RefreshStatus | None) -> bool:
    if refresh is None:
        return False
    if refresh.consecutive_failures > 0:
        return True
    return bool(
        refresh.last_error
        and refresh.last_error_at is not None
        and (refresh.last_success is None or refresh.last_error_at > refresh.last_success)
    )


def feed_state(
    calendar: Calendar,
    *,
    refresh: RefreshStatus | None,
    snapshot: Snapshot | None,
    now: dt.datetime | None = None,
) -> FeedState:
    """What a player fetching the calendar's feed gets now."""
    now = now or timezone.now()
    failing = _failing(refresh)
    if snapshot is None:
        if failing:
            return FeedState("502", "502: nothing could be read yet.")
        return FeedState("none", "Nothing read yet: the first request will read it.")
    stale = tuple(StaleRoom.from_json(item) for item in snapshot.stale_rooms or [])
    written_by_last_attempt = (
        refresh is None
        or refresh.last_attempt is None
        or snapshot.generated >= refresh.last_attempt
    )
    if stale and written_by_last_attempt:
        rooms = "; ".join(
            f"room {room.address} failing since {_when(room.failing_since)}, "
            f"shown as read at {_when(room.fetched_at)}"
            for room in stale
        )
        return FeedState(
            "partly-stale",
            f"Partly stale ({rooms}).",
            copy_from=snapshot.generated,
            stale_rooms=stale,
        )
    if failing:
        if calendar.send_cache_on_server_error or snapshot.is_fresh(calendar, now):
            return FeedState(
                "last-good",
                f"Last good copy from {_when(snapshot.generated)}.",
                copy_from=snapshot.generated,
                stale_rooms=stale,
            )
        return FeedState("502", "502: the last refresh failed (sendCacheOnServerError is off).")
    return FeedState(
        "fresh", f"Fresh, read at {_when(snapshot.generated)}.", copy_from=snapshot.generated
    )


def feed_states(now: dt.datetime | None = None) -> dict[str, FeedState]:
    """Every calendar's state, by calendar id (three queries)."""
    now = now or timezone.now()
    refreshes = {row.calendar_id: row for row in RefreshStatus.objects.all()}
    snapshots = {row.calendar_id: row for row in Snapshot.objects.defer("ics")}
    return {
        calendar.calendar_id: feed_state(
            calendar,
            refresh=refreshes.get(calendar.pk),
            snapshot=snapshots.get(calendar.pk),
            now=now,
        )
        for calendar in Calendar.objects.all()
    }
