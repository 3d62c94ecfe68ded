"""Graph event JSON → EventRecord, and the compact form the delta state keeps."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from exchangelib.winzone import MS_TIMEZONE_TO_IANA_MAP

from connector.core.records import EventRecord

log = logging.getLogger(__name__)

# Only what an EventRecord needs: smaller answers, faster pages (calendarView's $select).
SELECT = (
    "iCalUId",
    "subject",
    "start",
    "end",
    "isAllDay",
    "location",
    "organizer",
    "sensitivity",
    "importance",
    "showAs",
    "isCancelled",
    "isDraft",
    "type",
    "originalStart",
    "categories",
    "lastModifiedDateTime",
    "attendees",
)
# Kept as Graph sends them by compact(); location, organizer, attendees and body are cut down.
_PLAIN = (
    "id",
    "iCalUId",
    "subject",
    "start",
    "end",
    "isAllDay",
    "sensitivity",
    "importance",
    "showAs",
    "isCancelled",
    "isDraft",
    "type",
    "originalStart",
    "categories",
    "lastModifiedDateTime",
)
# Outlook's GlobalObjectId: Graph's iCalUId of an occurrence carries the
# occurrence's date in bytes 16-19; the series' UID has zeros there (as EWS gives).
GOID_PREFIX = "040000008200E00074C5B7101A82E008"
FREE_BUSY = {
    "free": "Free",
    "tentative": "Tentative",
    "busy": "Busy",
    "oof": "OOF",
    "workingelsewhere": "WorkingElsewhere",
    "unknown": "NoData",
}


def compact(event: dict[str, Any], *, with_body: bool) -> dict[str, Any]:
    """What record() reads of a Graph event, and nothing else (the delta state keeps this).

    Properties the event does not carry stay absent, so that merging an update
    into a kept event overwrites only what the update says.
    """
    kept = {name: event[name] for name in _PLAIN if name in event}
    if "location" in event:
        kept["location"] = {"displayName": (event["location"] or {}).get("displayName")}
    if "organizer" in event:
        address = (event["organizer"] or {}).get("emailAddress") or {}
        kept["organizer"] = {
            "emailAddress": {"name": address.get("name"), "address": address.get("address")}
        }
    if "attendees" in event:
        kept["attendees"] = len(event["attendees"] or ())  # record() asks only: any?
    if with_body and "body" in event:
        kept["body"] = {"content": (event["body"] or {}).get("content")}
    return kept


def record(event: dict[str, Any], resource: str, include_body: bool) -> EventRecord:
    """The EventRecord of one Graph event (from calendarView, its delta, or compact())."""
    all_day = bool(event.get("isAllDay"))
    start = graph_time(event["start"])
    end = graph_time(event["end"])
    kind = str(event.get("type") or "singleInstance")
    recurring = kind in ("occurrence", "exception")
    occurrence_id = ""
    if recurring:
        # The original start names the occurrence; an occurrence Graph sends without
        # one (never moved) is named by its start, as the EWS source does.
        original = event.get("originalStart")
        occurrence_id = (parse_utc(original) if original else start).isoformat()
    organizer = (event.get("organizer") or {}).get("emailAddress") or {}
    body: str | None = None
    if include_body:
        body = ((event.get("body") or {}).get("content")) or ""
    modified = event.get("lastModifiedDateTime")
    return EventRecord(
        uid=series_uid(str(event.get("iCalUId") or event.get("id") or ""), recurring),
        occurrence_id=occurrence_id,
        resource=resource,
        subject=str(event.get("subject") or ""),
        start=graph_date(event["start"]) if all_day else start,
        end=graph_date(event["end"]) if all_day else end,
        all_day=all_day,
        location=str((event.get("location") or {}).get("displayName") or ""),
        organizer_name=str(organizer.get("name") or ""),
        organizer_email=str(organizer.get("address") or ""),
        sensitivity=str(event.get("sensitivity") or "normal").capitalize(),
        importance=str(event.get("importance") or "normal").capitalize(),
        free_busy=FREE_BUSY.get(str(event.get("showAs") or "busy").lower(), "Busy"),
        is_cancelled=bool(event.get("isCancelled")),
        is_draft=bool(event.get("isDraft")),
        is_meeting=bool(event.get("attendees")),
        is_recurring=recurring,
        categories=tuple(event.get("categories") or ()),
        body=body,
        last_modified=parse_utc(modified) if modified else None,
    )


def graph_param(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(text: str) -> dt.datetime:
    """Graph's timestamps: '2026-01-05T09:00:00Z', with up to 7 decimals."""
    text = text.strip().replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(ch for ch in rest if ch.isdigit())
        offset = rest[len(digits) :]
        text = f"{head}.{digits[:6].ljust(6, '0')}{offset}"
    value = dt.datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def graph_time(value: dict[str, str]) -> dt.datetime:
    """A dateTimeTimeZone; we ask for UTC, but honour another zone if Graph sends one."""
    parsed = parse_utc(value["dateTime"]).replace(tzinfo=None)
    zone_name = value.get("timeZone") or "UTC"
    if zone_name in ("UTC", "Etc/UTC", "tzone://Microsoft/Utc"):
        return parsed.replace(tzinfo=dt.UTC)
    # When Prefer is not honoured Graph answers in the mailbox's zone, by its Windows
    # name ("W. Europe Standard Time"), or by the IANA name it was given.
    zone_name = MS_TIMEZONE_TO_IANA_MAP.get(zone_name, zone_name)
    try:
        return parsed.replace(tzinfo=ZoneInfo(zone_name)).astimezone(dt.UTC)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("unknown time zone %s from Graph; reading the time as UTC", zone_name)
        return parsed.replace(tzinfo=dt.UTC)


def graph_date(value: dict[str, str]) -> dt.date:
    """An all-day event's day: its midnight in whatever zone Graph answers in, unconverted."""
    parsed = dt.datetime.fromisoformat(value["dateTime"].strip()[:19])
    return dt.date(parsed.year, parsed.month, parsed.day)


def series_uid(uid: str, recurring: bool) -> str:
    """The series' UID (as EWS gives it) from an occurrence's iCalUId."""
    if recurring and uid.upper().startswith(GOID_PREFIX) and len(uid) >= 40:
        return uid[:32] + "00000000" + uid[40:]
    return uid
