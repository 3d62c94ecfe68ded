"""The iCalendar text of a feed, built with the ``icalendar`` package.

Input is what the filters kept (already redacted) and the alarms computed for
each event; nothing here knows Exchange. The output is deterministic: the same
events give the same bytes, so a snapshot's ETag changes only when the feed does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import icalendar

from connector.core.records import EventRecord
from connector.pipeline.alarms import ComputedAlarm

PRODID = "-//ews-calendar//ews-calendar feed//EN"
UID_DOMAIN = "ews-calendar"
# Players that would fetch more often than this gain nothing: a live (0 s)
# calendar still tells them a minute.
MIN_REFRESH_INTERVAL = 60

CLASSES = {
    "Normal": "PUBLIC",
    "Personal": "PRIVATE",
    "Private": "PRIVATE",
    "Confidential": "CONFIDENTIAL",
}
PRIORITIES = {"High": 1, "Normal": 5, "Low": 9}
BUSY_STATUSES = {
    "Free": "FREE",
    "Tentative": "TENTATIVE",
    "Busy": "BUSY",
    "OOF": "OOF",
    "WorkingElsewhere": "WORKINGELSEWHERE",
}


@dataclass(frozen=True)
class FeedInfo:
    """What the calendar says about its feed as a whole."""

    name: str  # X-WR-CALNAME
    refresh_interval: int  # seconds (cachePersistence)
    timezone: str = "UTC"  # X-WR-TIMEZONE: the zone "today" and day alarms are computed in
    label: str = ""  # replaces LOCATION of every event
    include_body: bool = False


@dataclass(frozen=True)
class FeedEvent:
    record: EventRecord
    alarms: list[ComputedAlarm] = field(default_factory=list)


def event_uid(record: EventRecord) -> str:
    """Unique in the feed and stable across refreshes.

    A recurring series shares one UID in Exchange and the same meeting booked
    in two rooms shares it too, but the feed shows each occurrence in each room
    as its own event: series UID, occurrence and resource together name it.
    """
    identity = "\x1f".join((record.uid, record.occurrence_id, record.resource.lower()))
    return f"{hashlib.sha256(identity.encode()).hexdigest()[:40]}@{UID_DOMAIN}"


def _status(record: EventRecord) -> str:
    if record.is_cancelled:
        return "CANCELLED"
    if record.free_busy == "Tentative":
        return "TENTATIVE"
    return "CONFIRMED"


def _sort_key(event: FeedEvent) -> tuple[str, str, str]:
    record = event.record
    start = record.start
    if isinstance(start, dt.datetime):
        text = start.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    else:
        text = f"{start.isoformat()}T"  # all-day events sort before that day's timed ones
    return (text, record.resource, event_uid(record))


def _when(value: dt.date | dt.datetime, all_day: bool) -> dt.date | dt.datetime:
    if all_day:
        return value.date() if isinstance(value, dt.datetime) else value
    assert isinstance(value, dt.datetime), "timed events carry datetimes"
    return value.astimezone(dt.UTC)


# RFC 5545 text allows no control character but HTAB (line breaks are escaped);
# subjects pasted into Outlook from other programs can carry them, and strict
# parsers then refuse the whole feed.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _clean(value: str) -> str:
    return _CONTROL.sub("", value)


def _cleaned(record: EventRecord) -> EventRecord:
    return replace(
        record,
        subject=_clean(record.subject),
        location=_clean(record.location),
        organizer_name=_clean(record.organizer_name),
        organizer_email=_clean(record.organizer_email),
        categories=tuple(_clean(category) for category in record.categories),
        body=_clean(record.body) if record.body is not None else None,
    )


def _vevent(event: FeedEvent, info: FeedInfo, stamp: dt.datetime) -> icalendar.Event:
    record = _cleaned(event.record)
    vevent = icalendar.Event()
    vevent.add("uid", event_uid(event.record))
    vevent.add("dtstamp", (record.last_modified or stamp).astimezone(dt.UTC))
    start = _when(record.start, record.all_day)
    end = _when(record.end, record.all_day)
    # DTEND may not come before DTSTART, nor equal it for a day (RFC 5545 3.8.2.2).
    if record.all_day and end <= start:
        end = start + dt.timedelta(days=1)
    elif end < start:
        end = start
    vevent.add("dtstart", start)
    vevent.add("dtend", end)
    vevent.add("summary", record.subject)
    location = _clean(info.label) or record.location
    if location:
        vevent.add("location", location)
    if record.organizer_email:
        organizer = icalendar.vCalAddress(f"mailto:{record.organizer_email}")
        if record.organizer_name:
            organizer.params["CN"] = icalendar.vText(record.organizer_name)
        vevent.add("organizer", organizer)
    vevent.add("class", CLASSES.get(record.sensitivity, "PUBLIC"))
    vevent.add("priority", PRIORITIES.get(record.importance, 5))
    vevent.add("status", _status(record))
    vevent.add("transp", "TRANSPARENT" if record.free_busy == "Free" else "OPAQUE")
    busy = BUSY_STATUSES.get(record.free_busy)
    if busy:
        vevent.add("x-microsoft-cdo-busystatus", busy)
    if record.categories:
        vevent.add("categories", list(record.categories))
    if info.include_body and record.body:
        vevent.add("description", record.body)
    # Which room mailbox (or ICS URL) the event came from.
    vevent.add("resources", [record.resource] if record.resource else [])
    vevent.add("x-ews-calendar-resource", record.resource)
    for alarm in event.alarms:
        vevent.add_component(_valarm(alarm, record))
    return vevent


def _valarm(alarm: ComputedAlarm, record: EventRecord) -> icalendar.Alarm:
    valarm = icalendar.Alarm()
    valarm.add("action", "DISPLAY")
    valarm.add("description", record.subject or "Event")
    if alarm.relative is not None:
        valarm.add("trigger", alarm.relative, parameters={"RELATED": alarm.relative_to})
    else:
        valarm.add("trigger", alarm.instant, parameters={"VALUE": "DATE-TIME"})
    return valarm


def build_ics(info: FeedInfo, events: Iterable[FeedEvent], *, stamp: dt.datetime) -> str:
    """The feed's text; ``stamp`` is the DTSTAMP of events Exchange gave no change time."""
    calendar = icalendar.Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-calname", info.name)
    calendar.add("x-wr-timezone", info.timezone)
    interval = dt.timedelta(seconds=max(info.refresh_interval, MIN_REFRESH_INTERVAL))
    calendar.add("refresh-interval", interval, parameters={"VALUE": "DURATION"})
    # The same hint for Outlook, which predates RFC 7986.
    calendar.add("x-published-ttl", icalendar.vDuration(interval))
    for event in sorted(events, key=_sort_key):
        calendar.add_component(_vevent(event, info, stamp))
    return calendar.to_ical().decode("utf-8")
