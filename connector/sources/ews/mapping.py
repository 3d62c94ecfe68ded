"""exchangelib calendar items as EventRecords.

Nothing after a source knows exchangelib: the pipeline sees EventRecords only.
Instants are read from the raw EWS text (kept by protocol.CalendarViewItems)
rather than from exchangelib's objects, which lose an all-day event's day when
the clocks change on its last day; every instant leaves here in UTC, every
all-day event as plain dates of the mailbox's zone.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from dataclasses import replace
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from exchangelib.winzone import MS_TIMEZONE_TO_IANA_MAP

from connector.core.records import EventRecord

# An item's raw Start and End (EWS text) and its start and end zones, when known.
RawTimes = tuple[str | None, str | None, ZoneInfo | None, ZoneInfo | None]


def zone_of(ms_id: str | None) -> ZoneInfo | None:
    """The zone of a Windows (or IANA) zone id; None for a customized or unknown one."""
    if not ms_id:
        return None
    if ms_id.lower() in ("utc", "tzone://microsoft/utc"):
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(MS_TIMEZONE_TO_IANA_MAP.get(ms_id, ms_id))
    except (ZoneInfoNotFoundError, ValueError):
        return None


def utc(value: dt.datetime) -> dt.datetime:
    return dt.datetime.fromtimestamp(value.timestamp(), tz=dt.UTC)


def raw_instant(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:  # EWS means UTC when it writes no offset
        value = value.replace(tzinfo=dt.UTC)
    return utc(value)


def local_date(instant: dt.datetime, zone: Any) -> dt.date:
    if zone is not None:
        local = instant.astimezone(zone)
    else:
        # Without the zone: a local midnight is within 12 hours of its day's UTC midnight.
        local = instant + dt.timedelta(hours=12)
    return dt.date(local.year, local.month, local.day)  # a plain date, not exchangelib's


def record(item: Any, raw: RawTimes, resource: str) -> EventRecord:
    """The EventRecord of one CalendarItem of a calendar view, read in ``resource``."""
    start: dt.datetime | dt.date
    end: dt.datetime | dt.date
    raw_start, raw_end = raw_instant(raw[0]), raw_instant(raw[1])
    start_zone = raw[2]
    if item.is_all_day and raw_start is not None and raw_end is not None:
        start = local_date(raw_start, start_zone)
        end = local_date(raw_end, raw[3] or start_zone)
        if end <= start:
            end = start + dt.timedelta(days=1)
    else:
        start = raw_start or utc(item.start)
        end = raw_end or utc(item.end)
    recurring = bool(item.is_recurring) or item.type in ("Occurrence", "Exception")
    occurrence_id = ""
    if recurring:
        # The occurrence's original start in UTC, as the Graph source names it too.
        original = item.original_start or raw_start
        if isinstance(original, dt.datetime):
            occurrence_id = utc(original).isoformat()
    name, email = organizer(item.organizer)
    return EventRecord(
        uid=item.uid or item.id,
        occurrence_id=occurrence_id,
        resource=resource,
        subject=item.subject or "",
        start=start,
        end=end,
        all_day=bool(item.is_all_day),
        location=item.location or "",
        organizer_name=name,
        organizer_email=email,
        sensitivity=item.sensitivity or "Normal",
        importance=item.importance or "Normal",
        free_busy=item.legacy_free_busy_status or "Busy",
        is_cancelled=bool(item.is_cancelled),
        is_draft=bool(item.is_draft),
        is_meeting=bool(item.is_meeting),
        is_recurring=recurring,
        categories=tuple(item.categories or ()),
        last_modified=utc(item.last_modified_time) if item.last_modified_time else None,
    )


def with_body(found: EventRecord, item: Any, body_field: str) -> EventRecord:
    """The record with the body (in ``body_field``) and organizer GetItem gave for it.

    ``item`` is an exception when the item went away between FindItem and GetItem:
    the record is kept without a body.
    """
    if isinstance(item, Exception):
        return replace(found, body="")
    body = getattr(item, body_field) or ""
    # Exchange 2010 has no TextBody: its Body may be HTML.
    if body_field == "body" and getattr(body, "body_type", "") == "HTML":
        body = html_to_text(str(body))
    name, email = organizer(item.organizer)
    return replace(
        found,
        body=str(body),
        organizer_name=name or found.organizer_name,
        organizer_email=email or found.organizer_email,
    )


def organizer(mailbox: Any) -> tuple[str, str]:
    """Name and SMTP address; X500 (EX) addresses, as FindItem may give, are no address."""
    if mailbox is None:
        return "", ""
    address = mailbox.email_address or ""
    routing = (mailbox.routing_type or "SMTP").upper()
    if routing != "SMTP" or "@" not in address:
        address = ""
    return mailbox.name or "", address


def html_to_text(markup: str) -> str:
    """Exchange 2010 has no TextBody: a plain reading of the HTML body."""
    text = re.sub(r"(?is)<(script|style).*?</\1>", "", markup)
    text = re.sub(r"(?i)<br\s*/?>|</p>|</div>", "\n", text)
    text = re.sub(r"<[^>]+>", "", text)
    return html.unescape(text).strip()
