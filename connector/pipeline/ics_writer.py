"""The iCalendar text of a feed, written line by line (RFC 5545).

Input is what the filters kept (already redacted) and the alarms computed for
each event; nothing here knows Exchange. The output is deterministic: the same
events give the same bytes, so a snapshot's ETag changes only when the feed does.

The lines are written here rather than through the ``icalendar`` package's
components: building and serialising its objects cost about 1 ms per event
(10,000 events took over 10 s), writing the lines costs a few microseconds. The
bytes are those the package wrote (same properties, order, escaping, parameter
quoting and folding; tests/test_ics_writer.py checks them against both parsers),
except where the package's were wrong: a literal backslash followed by ``N`` in
a text, which it turned into a line break, is kept as written; an organizer
name holding a backslash or a tab is quoted.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

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


# --- values (RFC 5545 3.3) -----------------------------------------------------------


def _text(value: str) -> str:
    r"""A TEXT value (3.3.11): backslash, semicolon and comma escaped, line breaks as ``\n``."""
    return (
        value.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\n")
    )


def _verbatim(value: str) -> str:
    """A value written as it is (X- properties, CAL-ADDRESS), on one line.

    A line break cannot be written in such a value (the icalendar package
    refused it); it becomes a space.
    """
    if "\n" in value or "\r" in value:
        return value.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    return value


# Parameter values (3.2) are quoted when they hold , ; : (and, as the icalendar
# package did for CN, a space, an apostrophe or a right single quotation mark);
# DQUOTE, ^ and line breaks are written as RFC 6868 says (^' ^^ ^n). A
# backslash or a tab means nothing special in a parameter value, but the
# icalendar package's parser reads an unquoted backslash as an escape
# (``CN=\:mailto:...`` loses the address) and strips an unquoted tab next to a
# delimiter, so a value holding either is quoted too.
_PARAM_ESCAPE = re.compile(r'\^|\r\n|\r|\n|"')
_PARAM_ESCAPES = {"^": "^^", "\r\n": "^n", "\r": "^n", "\n": "^n", '"': "^'"}
_PARAM_QUOTED = re.compile("[,;: \t'\u2019\\\\]")


def _param_value(value: str) -> str:
    escaped = _PARAM_ESCAPE.sub(lambda match: _PARAM_ESCAPES[match.group(0)], value)
    return f'"{escaped}"' if _PARAM_QUOTED.search(value) else escaped


def _utc(value: dt.datetime) -> str:
    """A DATE-TIME in UTC (3.3.5, form #2); seconds are its precision."""
    value = value.astimezone(dt.UTC)
    return (
        f"{value.year:04}{value.month:02}{value.day:02}"
        f"T{value.hour:02}{value.minute:02}{value.second:02}Z"
    )


def _date(value: dt.date) -> str:
    return f"{value.year:04}{value.month:02}{value.day:02}"


def _when_line(name: str, value: dt.date | dt.datetime) -> str:
    if isinstance(value, dt.datetime):
        return f"{name}:{_utc(value)}"
    return f"{name};VALUE=DATE:{_date(value)}"


def _duration(value: dt.timedelta) -> str:
    """A DURATION (3.3.6) in the icalendar package's form: -PT5M, P1DT2H, P0D."""
    sign = ""
    if value.days < 0:
        sign = "-"
        value = -value
    time = ""
    if value.seconds:
        hours, rest = divmod(value.seconds, 3600)
        minutes, seconds = divmod(rest, 60)
        time = "T"
        if hours:
            time += f"{hours}H"
        if minutes or (hours and seconds):
            time += f"{minutes}M"
        if seconds:
            time += f"{seconds}S"
    if value.days == 0 and time:
        return f"{sign}P{time}"
    return f"{sign}P{value.days}D{time}"


# --- lines (RFC 5545 3.1) ------------------------------------------------------------

# A line holds at most 74 octets before its fold (the icalendar package's
# limit), continuation lines one space and 74 octets: within the 75 the RFC asks.
_FOLD_AT = 74


def _fold(line: str) -> str:
    """Fold a content line between characters, never inside a UTF-8 sequence.

    As the icalendar package did, a line is not broken right after a backslash
    or a caret (the start of an escape); that character begins the next line.
    """
    if len(line) <= _FOLD_AT and (line.isascii() or len(line.encode()) <= _FOLD_AT):
        return line
    if line.isascii():
        pieces = []
        begin = 0
        while len(line) - begin > _FOLD_AT:
            end = begin + _FOLD_AT
            if line[end - 1] in "\\^":
                end -= 1
            pieces.append(line[begin:end])
            begin = end
        pieces.append(line[begin:])
        return "\r\n ".join(pieces)
    pieces = []
    begin = 0
    octets = 0
    for index, char in enumerate(line):
        code = ord(char)
        size = 1 if code < 0x80 else 2 if code < 0x800 else 3 if code < 0x10000 else 4
        if index > begin and octets + size > _FOLD_AT:
            if index - begin > 1 and line[index - 1] in "\\^":
                pieces.append(line[begin : index - 1])
                begin = index - 1
                octets = 1
            else:
                pieces.append(line[begin:index])
                begin = index
                octets = 0
        octets += size
    pieces.append(line[begin:])
    return "\r\n ".join(pieces)


# --- components ----------------------------------------------------------------------


def _write_vevent(
    out: list[str], event: FeedEvent, uid: str, info: FeedInfo, stamp: dt.datetime
) -> None:
    """The VEVENT's lines, properties in the order the icalendar package wrote them."""
    record = event.record
    subject = _clean(record.subject)
    start = _when(record.start, record.all_day)
    end = _when(record.end, record.all_day)
    # DTEND may not come before DTSTART, nor equal it for a day (RFC 5545 3.8.2.2).
    if record.all_day and end <= start:
        end = start + dt.timedelta(days=1)
    elif end < start:
        end = start
    out.append("BEGIN:VEVENT")
    out.append(_fold(f"SUMMARY:{_text(subject)}"))
    out.append(_when_line("DTSTART", start))
    out.append(_when_line("DTEND", end))
    out.append(f"DTSTAMP:{_utc(record.last_modified or stamp)}")
    out.append(_fold(f"UID:{_text(uid)}"))
    if record.categories:
        categories = ",".join(_text(_clean(category)) for category in record.categories)
        out.append(_fold(f"CATEGORIES:{categories}"))
    out.append(f"CLASS:{CLASSES.get(record.sensitivity, 'PUBLIC')}")
    body = _clean(record.body) if info.include_body and record.body else ""
    if body:
        out.append(_fold(f"DESCRIPTION:{_text(body)}"))
    location = _clean(info.label) or _clean(record.location)
    if location:
        out.append(_fold(f"LOCATION:{_text(location)}"))
    email = _clean(record.organizer_email)
    if email:
        name = _clean(record.organizer_name)
        cn = f";CN={_param_value(name)}" if name else ""
        out.append(_fold(f"ORGANIZER{cn}:mailto:{_verbatim(email)}"))
    out.append(f"PRIORITY:{PRIORITIES.get(record.importance, 5)}")
    # Which room mailbox (or ICS URL) the event came from.
    resource = record.resource
    if resource:
        out.append(_fold(f"RESOURCES:{_text(resource)}"))
    out.append(f"STATUS:{_status(record)}")
    out.append(f"TRANSP:{'TRANSPARENT' if record.free_busy == 'Free' else 'OPAQUE'}")
    out.append(_fold(f"X-EWS-CALENDAR-RESOURCE:{_verbatim(resource)}"))
    busy = BUSY_STATUSES.get(record.free_busy)
    if busy:
        out.append(f"X-MICROSOFT-CDO-BUSYSTATUS:{busy}")
    if event.alarms:
        description = _fold(f"DESCRIPTION:{_text(subject or 'Event')}")
        for alarm in event.alarms:
            out.append("BEGIN:VALARM")
            out.append("ACTION:DISPLAY")
            out.append(description)
            out.append(_trigger(alarm))
            out.append("END:VALARM")
    out.append("END:VEVENT")


def _trigger(alarm: ComputedAlarm) -> str:
    """Relative to the event's start or end (a DURATION), or an instant in UTC."""
    if alarm.relative is not None:
        return f"TRIGGER;RELATED={alarm.relative_to}:{_duration(alarm.relative)}"
    return f"TRIGGER;VALUE=DATE-TIME:{_utc(alarm.instant)}"


def build_ics(info: FeedInfo, events: Iterable[FeedEvent], *, stamp: dt.datetime) -> str:
    """The feed's text; ``stamp`` is the DTSTAMP of events Exchange gave no change time."""
    interval = _duration(dt.timedelta(seconds=max(info.refresh_interval, MIN_REFRESH_INTERVAL)))
    out = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        _fold(f"PRODID:{_text(PRODID)}"),
        "CALSCALE:GREGORIAN",
        _fold(f"X-WR-CALNAME:{_verbatim(info.name)}"),
        # RFC 7986, and the same hint for Outlook, which predates it.
        f"REFRESH-INTERVAL;VALUE=DURATION:{interval}",
        f"X-PUBLISHED-TTL:{interval}",
        _fold(f"X-WR-TIMEZONE:{_verbatim(info.timezone)}"),
    ]
    keyed = sorted(((_sort_key(event), event) for event in events), key=lambda pair: pair[0])
    for key, event in keyed:
        _write_vevent(out, event, key[2], info, stamp)
    out.append("END:VCALENDAR")
    out.append("")
    return "\r\n".join(out)
