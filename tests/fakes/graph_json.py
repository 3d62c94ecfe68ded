"""Graph's JSON for the fake Graph: events as Graph writes them, and error bodies.

Shared by calendarView and calendarView/delta, which answer with the same
event properties (https://learn.microsoft.com/graph/api/event-delta: "expect a
delta function call on a calendarView to return the same properties you'd
normally get from a GET /calendarView request").
"""

from __future__ import annotations

import datetime as dt
import html
import json
import uuid
from urllib.parse import quote

from tests.fakes.base import Response
from tests.fakes.rooms import FakeEvent

JSON = "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8"
GOID_PREFIX = "040000008200E00074C5B7101A82E008"
SHOW_AS = {
    "Free": "free",
    "Tentative": "tentative",
    "Busy": "busy",
    "OOF": "oof",
    "WorkingElsewhere": "workingElsewhere",
    "NoData": "unknown",
}


def parse_param(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:  # Graph reads a window without offset as UTC
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def prefer(header: str) -> dict[str, str]:
    found = {}
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key:
            found[key.strip().lower()] = value.strip().strip('"')
    return found


def graph_time(value: dt.datetime, zone: dt.tzinfo) -> str:
    return value.astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S.0000000")


def occurrence_uid(event: FakeEvent) -> str:
    """Graph's iCalUId differs per occurrence: Exchange's GlobalObjectId with its date."""
    if not event.is_recurring or not event.uid.upper().startswith(GOID_PREFIX):
        return event.uid
    day = event.series_start
    assert day is not None
    date = day.date() if isinstance(day, dt.datetime) else day
    return event.uid[:32] + f"{date.year:04X}{date.month:02X}{date.day:02X}" + event.uid[40:]


def event_json(
    event: FakeEvent, room: str, zone: dt.tzinfo, zone_name: str, body_type: str
) -> dict[str, object]:
    if event.all_day:
        # All-day events are midnight to midnight whatever the requested zone.
        start = {"dateTime": f"{event.start.isoformat()}T00:00:00.0000000", "timeZone": zone_name}
        end = {"dateTime": f"{event.end.isoformat()}T00:00:00.0000000", "timeZone": zone_name}
    else:
        start = {"dateTime": graph_time(event.start, zone), "timeZone": zone_name}  # type: ignore[arg-type]
        end = {"dateTime": graph_time(event.end, zone), "timeZone": zone_name}  # type: ignore[arg-type]
    series_master = "AAMkADseries" + event.uid[-16:] + "=" if event.is_recurring else None
    original_start = None
    if event.series_start is not None:
        if isinstance(event.series_start, dt.datetime):
            original_start = event.series_start.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        else:
            original_start = f"{event.series_start.isoformat()}T00:00:00Z"
    if body_type == "text":
        body = {"contentType": "text", "content": event.body}
    else:
        content = html.escape(event.body).replace("\n", "<br>\r\n")
        body = {
            "contentType": "html",
            "content": '<html>\r\n<head>\r\n<meta http-equiv="Content-Type" content="text/html; '
            f'charset=utf-8">\r\n</head>\r\n<body>\r\n<div>{content}</div>\r\n</body>\r\n</html>\r\n',
        }
    attendees = []
    if event.is_meeting:
        attendees = [
            {
                "type": "required",
                "status": {"response": "none", "time": "0001-01-01T00:00:00Z"},
                "emailAddress": {"name": event.organizer_name, "address": event.organizer_email},
            },
            {
                "type": "resource",
                "status": {"response": "accepted", "time": "2026-01-05T09:00:00Z"},
                "emailAddress": {"name": room.split("@")[0], "address": room},
            },
        ]
    modified = event.last_modified.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
    return {
        "@odata.etag": f'W/"{event.change_key}"',
        "id": event.item_id,
        "createdDateTime": "2026-01-05T08:00:00.0000000Z",
        "lastModifiedDateTime": modified,
        "changeKey": event.change_key,
        "categories": list(event.categories),
        "transactionId": None,
        "originalStartTimeZone": "Romance Standard Time",
        "originalEndTimeZone": "Romance Standard Time",
        "iCalUId": occurrence_uid(event),
        "reminderMinutesBeforeStart": 15,
        "isReminderOn": False,
        "hasAttachments": False,
        "subject": event.subject,
        "bodyPreview": event.body[:255],
        "importance": event.importance.lower(),
        "sensitivity": event.sensitivity.lower(),
        "isAllDay": event.all_day,
        "isCancelled": event.is_cancelled,
        "isOrganizer": False,
        "responseRequested": True,
        "seriesMasterId": series_master,
        "showAs": SHOW_AS.get(event.free_busy, "busy"),
        "type": (
            ("occurrence" if event.start == event.series_start else "exception")
            if event.is_recurring
            else "singleInstance"
        ),
        "webLink": f"https://outlook.office365.com/owa/?itemid={quote(event.item_id)}",
        "onlineMeetingUrl": None,
        "isOnlineMeeting": False,
        "onlineMeetingProvider": "unknown",
        "allowNewTimeProposals": True,
        "occurrenceId": None,
        "isDraft": event.is_draft,
        "hideAttendees": False,
        "originalStart": original_start,
        "responseStatus": {"response": "accepted", "time": "2026-01-05T09:00:00Z"},
        "body": body,
        "start": start,
        "end": end,
        "location": {
            "displayName": event.location,
            "locationType": "default",
            "uniqueIdType": "unknown",
            "address": {},
            "coordinates": {},
        },
        "locations": [{"displayName": event.location, "locationType": "default"}]
        if event.location
        else [],
        "recurrence": None,
        "attendees": attendees,
        "organizer": {
            "emailAddress": {"name": event.organizer_name, "address": event.organizer_email}
        },
        "onlineMeeting": None,
    }


def select(event: dict[str, object], names: list[str]) -> dict[str, object]:
    if not names:
        return event
    kept = {key: event[key] for key in ("@odata.etag", "id")}
    for name in names:
        if name in event:
            kept[name] = event[name]
    return kept


def error(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None
) -> Response:
    request_id = str(uuid.uuid4())
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": request_id,
                "client-request-id": request_id,
            },
        }
    }
    return Response(
        status,
        json.dumps(body),
        headers={"request-id": request_id, **(headers or {})},
        content_type="application/json",
    )
