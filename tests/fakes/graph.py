"""A fake of Microsoft Graph's calendarView for room mailboxes.

``GET /v1.0/users/{room}/calendarView?startDateTime=..&endDateTime=..`` with a
bearer token from the fake identity platform, serving the rooms of
``tests.fakes.rooms`` (the same data as the EWS fake) as Graph's event JSON.
As real Graph does, it pages by 10 unless ``$top`` says otherwise, lists single
instances before the occurrences of recurring series (so a reader that stops
at page 1 loses them), honours ``$select`` and ``Prefer: outlook.timezone`` /
``outlook.body-content-type``, and answers errors with Graph's JSON bodies.

It records the largest number of requests in flight at once per app (client
id of the token): Graph allows 4 for Outlook resources.

A delegated token (one with a signed-in account) reads as that account: its own
calendar with ``Calendars.Read``, another mailbox's only with
``Calendars.Read.Shared`` (or ``Calendars.ReadWrite.Shared``) in the token AND
rights of the account on that mailbox (``share``), else 403 ErrorAccessDenied
("Get shared or delegated Outlook calendar and its events",
learn.microsoft.com/graph/outlook-get-shared-events-calendars). Application
permissions (``grant``) do not apply to delegated tokens.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
import threading
import time
import uuid
from collections import defaultdict
from urllib.parse import quote, unquote, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from exchangelib.winzone import MS_TIMEZONE_TO_IANA_MAP

from tests.fakes.base import FakeHTTPServer, Request, Response
from tests.fakes.identity import FakeIdentityPlatform
from tests.fakes.rooms import FakeEvent, build_rooms, overlapping

JSON = "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8"
GOID_PREFIX = "040000008200E00074C5B7101A82E008"
MAX_TOP = 1000
SHOW_AS = {
    "Free": "free",
    "Tentative": "tentative",
    "Busy": "busy",
    "OOF": "oof",
    "WorkingElsewhere": "workingElsewhere",
    "NoData": "unknown",
}
# /users/{id}/calendarView, or /users('{id}')/calendarView as Graph writes its next links.
_PATH = re.compile(
    r"^/v1\.0/users(?:/(?P<user>[^/(]+)|\('(?P<quoted>[^']+)'\))/calendarView$", re.IGNORECASE
)


def _user(match: re.Match[str]) -> str:
    return unquote(match.group("user") or match.group("quoted")).lower()


class FakeGraph(FakeHTTPServer):
    """Graph's ``/users/{id}/calendarView`` over the shared fake rooms."""

    def __init__(
        self,
        identity: FakeIdentityPlatform,
        *,
        today: dt.date | None = None,
        rooms: dict[str, list[FakeEvent]] | None = None,
    ) -> None:
        super().__init__(tls=True)
        self.identity = identity
        self.rooms = rooms if rooms is not None else build_rooms(today or dt.date.today())
        self.page_size = 10  # without $top
        self.max_page_size = MAX_TOP  # Graph may send fewer items than $top asks
        self.extra_audiences: set[str] = set()  # other names tokens may be issued for
        self.work_time = 0.0  # seconds each calendarView answer takes, counted as in flight
        # client id -> permissions granted with admin consent
        self.permissions: dict[str, set[str]] = defaultdict(set)
        # client id -> rooms the app may read (RBAC for Applications scope); None = all
        self.scopes: dict[str, set[str] | None] = {}
        self.access_policy_blocked: dict[str, set[str]] = defaultdict(set)
        # account -> mailboxes whose calendar was shared with it (delegated reads)
        self.shared_with: dict[str, set[str]] = defaultdict(set)
        self.in_flight: dict[str, int] = defaultdict(int)
        self.max_in_flight: dict[str, int] = defaultdict(int)
        self._flight_lock = threading.Lock()
        self._throttle: list[tuple[int, int]] = []  # (status, retry_after)
        self._throttle_lock = threading.Lock()
        # Graph answers in this zone (a Windows name) whatever Prefer asks, as when the
        # Prefer header is not honoured; None: the Prefer zone, UTC without one.
        self.answer_zone: str | None = None
        self.omitted: set[str] = set()  # properties left out of every event
        self.exceptions: set[str] = set()  # item ids of occurrences that were modified

    # -- set-up ---------------------------------------------------------------------
    def grant(self, client_id: str, permission: str = "Calendars.Read") -> None:
        self.permissions[client_id].add(permission)

    def revoke(self, client_id: str, permission: str = "Calendars.Read") -> None:
        self.permissions[client_id].discard(permission)

    def limit_to(self, client_id: str, rooms: set[str]) -> None:
        """RBAC for Applications: a management scope that holds only these rooms."""
        self.scopes[client_id] = {room.lower() for room in rooms}

    def share(self, account: str, *rooms: str) -> None:
        """The rooms' calendars are shared with (or delegated to) ``account``."""
        self.shared_with[account.lower()].update(room.lower() for room in rooms)

    def block_by_access_policy(self, client_id: str, room: str) -> None:
        """A legacy application access policy that denies this app the room."""
        self.access_policy_blocked[client_id].add(room.lower())

    def throttle_next(self, count: int = 1, *, retry_after: int = 1, status: int = 429) -> None:
        """Answer the next ``count`` calendarView requests with 429 (or 503) and Retry-After."""
        with self._throttle_lock:
            self._throttle.extend([(status, retry_after)] * count)

    def stop_throttling(self) -> None:
        """Forget the throttled answers still waiting to be sent."""
        with self._throttle_lock:
            self._throttle.clear()

    def calendar_view_requests(self, room: str | None = None) -> list[Request]:
        with self._log_lock:
            found = [r for r in self.requests if _PATH.match(r.path)]
        if room is None:
            return found
        return [r for r in found if _user(_PATH.match(r.path)) == room]  # type: ignore[arg-type]

    # -- protocol ---------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        match = _PATH.match(request.path)
        if request.method != "GET" or match is None:
            return _error(
                400, "BadRequest", f"Resource not found for the segment '{request.path}'."
            )
        auth = request.header("authorization")
        token = auth[7:] if auth.lower().startswith("bearer ") else ""
        if not token:
            return _error(
                401,
                "InvalidAuthenticationToken",
                "Access token is empty.",
                headers={"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'},
            )
        issued = self.identity.token_info(token)
        audiences = {self.url} | self.extra_audiences
        if issued is None or not any(
            self.identity.is_valid_token(token, audience=audience) for audience in audiences
        ):
            return _error(
                401,
                "InvalidAuthenticationToken",
                "Lifetime validation failed, the token is expired.",
                headers={"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'},
            )
        client_id = issued.client_id
        with self._flight_lock:
            self.in_flight[client_id] += 1
            self.max_in_flight[client_id] = max(
                self.max_in_flight[client_id], self.in_flight[client_id]
            )
        try:
            if self.work_time:
                time.sleep(self.work_time)
            if issued.account:
                refused = _delegated_refusal(issued.account, issued.scopes, _user(match), self)
                if refused is not None:
                    return refused
            return self._calendar_view(
                request, _user(match), client_id, delegated=bool(issued.account)
            )
        finally:
            with self._flight_lock:
                self.in_flight[client_id] -= 1

    def _calendar_view(
        self, request: Request, user: str, client_id: str, *, delegated: bool = False
    ) -> Response:
        with self._throttle_lock:
            throttled = self._throttle.pop(0) if self._throttle else None
        if throttled is not None:
            status, retry_after = throttled
            code, message = (
                ("ApplicationThrottled", "Application is over its MailboxConcurrency limit.")
                if status == 429
                else ("ServiceUnavailable", "The service is temporarily unavailable.")
            )
            return _error(status, code, message, headers={"Retry-After": str(retry_after)})
        if not delegated and (
            "Calendars.Read" not in self.permissions[client_id]
            and "Calendars.ReadWrite" not in self.permissions[client_id]
        ):
            return _error(
                403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
            )
        if user not in self.rooms:
            return _error(404, "ErrorInvalidUser", f"The requested user '{user}' is invalid.")
        allowed = None if delegated else self.scopes.get(client_id)
        if allowed is not None and user not in allowed:
            return _error(
                403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
            )
        if not delegated and user in self.access_policy_blocked[client_id]:
            return _error(
                403,
                "ErrorAccessDenied",
                "Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly "
                "AccessPolicy settings.",
            )
        start_text = request.arg("startDateTime")
        end_text = request.arg("endDateTime")
        if not start_text or not end_text:
            return _error(
                400,
                "ErrorInvalidParameter",
                "This request requires a time window specified by the query string parameters "
                "StartDateTime and EndDateTime.",
            )
        try:
            start, end = _parse_param(start_text), _parse_param(end_text)
        except ValueError:
            return _error(
                400,
                "ErrorInvalidParameter",
                "The value of StartDateTime or EndDateTime is invalid.",
            )
        try:
            top = int(request.arg("$top", str(self.page_size)))
            skip = int(request.arg("$skip", "0"))
        except ValueError:
            return _error(400, "BadRequest", "Invalid $top or $skip.")
        top = max(1, min(top, self.max_page_size))
        prefer = _prefer(request.header("prefer"))
        zone_name = self.answer_zone or prefer.get("outlook.timezone", "UTC")
        try:
            # Graph takes IANA and Windows names alike, and answers with the name it was given.
            iana = MS_TIMEZONE_TO_IANA_MAP.get(zone_name, zone_name)
            zone = dt.UTC if zone_name == "UTC" else ZoneInfo(iana)
        except (ZoneInfoNotFoundError, ValueError):
            zone, zone_name = dt.UTC, "UTC"
        body_type = prefer.get("outlook.body-content-type", "html")

        found = overlapping(self.rooms[user], start, end)
        # Graph lists single instances first, then the occurrences of series.
        ordered = [e for e in found if not e.is_recurring] + [e for e in found if e.is_recurring]
        page = ordered[skip : skip + top]
        select = [s for s in request.arg("$select").split(",") if s]
        value = [
            self._shown(_select(_event_json(e, user, zone, zone_name, body_type), select))
            for e in page
        ]

        payload: dict[str, object] = {
            "@odata.context": f"{self.url}/v1.0/$metadata#users('{quote(user)}')/calendarView"
            + (f"({','.join(select)})" if select else ""),
            "value": value,
        }
        if skip + top < len(ordered):
            params = {key: values[0] for key, values in request.query.items()}
            params["$top"] = str(top)
            params["$skip"] = str(skip + top)
            payload["@odata.nextLink"] = (
                f"{self.url}/v1.0/users('{quote(user)}')/calendarView?{urlencode(params)}"
            )
        headers = {"request-id": str(uuid.uuid4())}
        applied = [f'{k}="{v}"' for k, v in prefer.items() if k.startswith("outlook.")]
        if applied:
            headers["Preference-Applied"] = ", ".join(applied)
        return Response(200, json.dumps(payload), headers=headers, content_type=JSON)

    def _shown(self, event: dict[str, object]) -> dict[str, object]:
        if event.get("id") in self.exceptions:
            event["type"] = "exception"
        return {key: value for key, value in event.items() if key not in self.omitted}


def _delegated_refusal(
    account: str, scopes: frozenset[str], user: str, graph: FakeGraph
) -> Response | None:
    """403 for a delegated token that may not read ``user``'s calendar."""
    denied = _error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
    if user == account.lower():
        own = {"Calendars.Read", "Calendars.ReadWrite", "Calendars.Read.Shared"}
        return None if scopes & own else denied
    if not scopes & {"Calendars.Read.Shared", "Calendars.ReadWrite.Shared"}:
        return denied
    if user in graph.rooms and user not in graph.shared_with[account.lower()]:
        return denied
    return None


def _parse_param(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:  # Graph reads a window without offset as UTC
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _prefer(header: str) -> dict[str, str]:
    found = {}
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key:
            found[key.strip().lower()] = value.strip().strip('"')
    return found


def _graph_time(value: dt.datetime, zone: dt.tzinfo) -> str:
    return value.astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S.0000000")


def _occurrence_uid(event: FakeEvent) -> str:
    """Graph's iCalUId differs per occurrence: Exchange's GlobalObjectId with its date."""
    if not event.is_recurring or not event.uid.upper().startswith(GOID_PREFIX):
        return event.uid
    day = event.series_start
    assert day is not None
    date = day.date() if isinstance(day, dt.datetime) else day
    return event.uid[:32] + f"{date.year:04X}{date.month:02X}{date.day:02X}" + event.uid[40:]


def _event_json(
    event: FakeEvent, room: str, zone: dt.tzinfo, zone_name: str, body_type: str
) -> dict[str, object]:
    if event.all_day:
        # All-day events are midnight to midnight whatever the requested zone.
        start = {"dateTime": f"{event.start.isoformat()}T00:00:00.0000000", "timeZone": zone_name}
        end = {"dateTime": f"{event.end.isoformat()}T00:00:00.0000000", "timeZone": zone_name}
    else:
        start = {"dateTime": _graph_time(event.start, zone), "timeZone": zone_name}  # type: ignore[arg-type]
        end = {"dateTime": _graph_time(event.end, zone), "timeZone": zone_name}  # type: ignore[arg-type]
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
        "iCalUId": _occurrence_uid(event),
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


def _select(event: dict[str, object], select: list[str]) -> dict[str, object]:
    if not select:
        return event
    kept = {key: event[key] for key in ("@odata.etag", "id")}
    for name in select:
        if name in event:
            kept[name] = event[name]
    return kept


def _error(
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
