"""EWS calendar items as EventRecords.

Nothing after a source knows exchangelib: the pipeline sees EventRecords only.
The items of a calendar view are read here straight from FindItem's XML
(``found_item``), not through exchangelib's CalendarItem objects: building those
cost more than half of a room's refresh, for the eighteen properties a record
needs. Instants are read from the raw EWS text, not as exchangelib reads them
(it loses an all-day event's day when the clocks change on its last day); every
instant leaves here in UTC, every all-day event as plain dates of the mailbox's
zone. GetItem's items (the bodies) are exchangelib's (``with_body``).
"""

from __future__ import annotations

import datetime as dt
import html
import logging
import re
from dataclasses import dataclass, replace
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from exchangelib.util import TNS
from exchangelib.winzone import MS_TIMEZONE_TO_IANA_MAP

from connector.core.records import EventRecord

log = logging.getLogger(__name__)

# An item's raw Start and End (EWS text) and its start and end zones, when known.
RawTimes = tuple[str | None, str | None, ZoneInfo | None, ZoneInfo | None]


@dataclass(frozen=True, slots=True)
class FoundItem:
    """One item of a calendar view as FindItem's XML gave it: what a record needs."""

    id: str
    changekey: str
    raw: RawTimes
    uid: str = ""
    subject: str = ""
    location: str = ""
    sensitivity: str = "Normal"
    importance: str = "Normal"
    free_busy: str = "Busy"
    item_type: str = ""  # CalendarItemType: Single, Occurrence, Exception, RecurringMaster
    is_all_day: bool = False
    is_cancelled: bool = False
    is_draft: bool = False
    is_meeting: bool = False
    is_recurring: bool = False
    original_start: dt.datetime | None = None
    last_modified: dt.datetime | None = None
    organizer_name: str = ""
    organizer_email: str = ""
    categories: tuple[str, ...] = ()


def _tag(name: str) -> str:
    return f"{{{TNS}}}{name}"


# FindItem's elements (the types namespace) by FoundItem field, for each kind of value.
_TEXTS = {
    _tag("UID"): "uid",
    _tag("Subject"): "subject",
    _tag("Location"): "location",
    _tag("Sensitivity"): "sensitivity",
    _tag("Importance"): "importance",
    _tag("LegacyFreeBusyStatus"): "free_busy",
    _tag("CalendarItemType"): "item_type",
}
_FLAGS = {
    _tag("IsAllDayEvent"): "is_all_day",
    _tag("IsCancelled"): "is_cancelled",
    _tag("IsDraft"): "is_draft",
    _tag("IsMeeting"): "is_meeting",
    _tag("IsRecurring"): "is_recurring",
}
_INSTANTS = {_tag("OriginalStart"): "original_start", _tag("LastModifiedTime"): "last_modified"}
_TRUE = ("true", "1", "on")  # xs:boolean (and exchangelib's "on")
_ITEM_ID, _START, _END = _tag("ItemId"), _tag("Start"), _tag("End")
_START_ZONE, _END_ZONE = _tag("StartTimeZone"), _tag("EndTimeZone")
_ORGANIZER, _MAILBOX, _CATEGORIES = _tag("Organizer"), _tag("Mailbox"), _tag("Categories")
_NAME, _ADDRESS, _ROUTING = _tag("Name"), _tag("EmailAddress"), _tag("RoutingType")


def found_item(elem: Any) -> FoundItem | None:
    """The FoundItem of one item element of a FindItem answer (lxml); None without an id.

    Exchange leaves out a property that has no value: each then takes its default,
    as exchangelib's fields do (Normal, Busy, not all day). The zones are read as
    ids (a customized zone, "tzone://Microsoft/Custom", is no zone: None). The
    children are walked once (a find() per property cost three times as much).
    """
    values: dict[str, Any] = {}
    item_id = changekey = ""
    start = end = None
    start_zone = end_zone = None
    for child in elem:
        tag = child.tag
        text = child.text
        if tag in _TEXTS:
            if text:
                values[_TEXTS[tag]] = text
        elif tag in _FLAGS:
            if text:
                values[_FLAGS[tag]] = text.strip().lower() in _TRUE
        elif tag == _START:
            start = text
        elif tag == _END:
            end = text
        elif tag in _INSTANTS:
            values[_INSTANTS[tag]] = _whole_seconds(text, tag)
        elif tag == _ITEM_ID:
            item_id, changekey = child.get("Id") or "", child.get("ChangeKey") or ""
        elif tag == _START_ZONE:
            start_zone = zone_of(child.get("Id") or child.get("Name"))
        elif tag == _END_ZONE:
            end_zone = zone_of(child.get("Id") or child.get("Name"))
        elif tag == _ORGANIZER:
            for mailbox in child:
                if mailbox.tag == _MAILBOX:
                    person = {part.tag: part.text for part in mailbox}
                    values["organizer_name"], values["organizer_email"] = _person(
                        person.get(_NAME), person.get(_ADDRESS), person.get(_ROUTING)
                    )
        elif tag == _CATEGORIES:
            values["categories"] = tuple(string.text for string in child if string.text)
    if not item_id:
        return None
    return FoundItem(
        id=item_id, changekey=changekey, raw=(start, end, start_zone, end_zone), **values
    )


def _whole_seconds(text: str | None, tag: str) -> dt.datetime | None:
    """An instant in whole seconds: an occurrence's identity must not change with the
    precision a server writes it in."""
    try:
        instant = raw_instant(text)
    except ValueError:
        log.warning("Exchange sent an unreadable %s: %r", tag.rpartition("}")[2], text)
        return None
    return instant.replace(microsecond=0) if instant else None


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


def record(item: FoundItem, resource: str) -> EventRecord | None:
    """The EventRecord of one item of a calendar view, read in ``resource``.

    None for an item without a readable start and end: it has no place in a calendar.
    """
    start: dt.datetime | dt.date
    end: dt.datetime | dt.date
    try:
        raw_start, raw_end = raw_instant(item.raw[0]), raw_instant(item.raw[1])
    except ValueError:
        raw_start = raw_end = None
    if raw_start is None or raw_end is None:
        log.warning("Exchange sent item %s without a readable start and end", item.id)
        return None
    start_zone = item.raw[2]
    if item.is_all_day:
        start = local_date(raw_start, start_zone)
        end = local_date(raw_end, item.raw[3] or start_zone)
        if end <= start:
            end = start + dt.timedelta(days=1)
    else:
        start, end = raw_start, raw_end
    recurring = item.is_recurring or item.item_type in ("Occurrence", "Exception")
    occurrence_id = ""
    if recurring:
        # The occurrence's original start in UTC, as the Graph source names it too.
        occurrence_id = (item.original_start or raw_start).isoformat()
    return EventRecord(
        uid=item.uid or item.id,
        occurrence_id=occurrence_id,
        resource=resource,
        subject=item.subject,
        start=start,
        end=end,
        all_day=item.is_all_day,
        location=item.location,
        organizer_name=item.organizer_name,
        organizer_email=item.organizer_email,
        sensitivity=item.sensitivity,
        importance=item.importance,
        free_busy=item.free_busy,
        is_cancelled=item.is_cancelled,
        is_draft=item.is_draft,
        is_meeting=item.is_meeting,
        is_recurring=recurring,
        categories=item.categories,
        last_modified=item.last_modified,
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
    """Name and SMTP address of an exchangelib Mailbox (GetItem's organizer)."""
    if mailbox is None:
        return "", ""
    return _person(mailbox.name, mailbox.email_address, mailbox.routing_type)


def _person(name: str | None, address: str | None, routing: str | None) -> tuple[str, str]:
    """Name and SMTP address; X500 (EX) addresses, as FindItem may give, are no address."""
    address = address or ""
    if (routing or "SMTP").upper() != "SMTP" or "@" not in address:
        address = ""
    return name or "", address


def html_to_text(markup: str) -> str:
    """Exchange 2010 has no TextBody: a plain reading of the HTML body."""
    text = re.sub(r"(?is)<(script|style).*?</\1>", "", markup)
    text = re.sub(r"(?i)<br\s*/?>|</p>|</div>", "\n", text)
    text = re.sub(r"<[^>]+>", "", text)
    return html.unescape(text).strip()
