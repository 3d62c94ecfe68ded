"""A fake of Microsoft Graph's calendarView and calendarView/delta for room mailboxes.

``GET /v1.0/users/{room}/calendarView?startDateTime=..&endDateTime=..`` and
``GET /v1.0/users/{room}/calendarView/delta?startDateTime=..&endDateTime=..``
with a bearer token from the fake identity platform, serving the rooms of
``tests.fakes.rooms`` (the same data as the EWS fake) as Graph's event JSON.

calendarView, as real Graph does, pages by 10 unless ``$top`` says otherwise,
lists single instances before the occurrences of recurring series (so a reader
that stops at page 1 loses them), honours ``$select`` and
``Prefer: outlook.timezone`` / ``outlook.body-content-type``, and answers
errors with Graph's JSON bodies.

calendarView/delta (https://learn.microsoft.com/graph/api/event-delta,
https://learn.microsoft.com/graph/delta-query-events,
https://learn.microsoft.com/graph/delta-query-overview) pages with
``@odata.nextLink`` (``$skiptoken``) by ``Prefer: odata.maxpagesize`` and ends a
round with ``@odata.deltaLink`` (``$deltatoken``); both tokens carry the window,
which cannot change afterwards. A deltaLink answers only the events added or
changed since (with all their properties) and ``{"id", "@removed": {"reason":
"deleted"}}`` for those gone, and, as the docs warn, also for events outside
the window that changed. It refuses ``$select``, ``$expand``, ``$filter``,
``$orderby`` and ``$search`` (not supported on delta for calendarView), answers
a token it no longer holds with ``410 Gone`` ``syncStateNotFound`` and, after
``require_resync()``, a sync reset: ``410 Gone`` ``resyncRequired`` with a
``Location`` to start again.

It records the largest number of requests in flight at once per app (client
id of the token): Graph allows 4 for Outlook resources; and, in ``answers``,
the status and the size of the body of every answer, so tests and benchmarks
can weigh a refresh.

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
import hashlib
import json
import re
import secrets
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from exchangelib.winzone import MS_TIMEZONE_TO_IANA_MAP

from tests.fakes.base import FakeHTTPServer, Request, Response
from tests.fakes.graph_json import JSON, error, event_json, parse_param, prefer, select
from tests.fakes.identity import FakeIdentityPlatform
from tests.fakes.rooms import FakeEvent, build_rooms, overlapping

MAX_TOP = 1000
# /users/{id}/calendarView, or /users('{id}')/calendarView as Graph writes its next links,
# optionally followed by /delta (or its full name, /microsoft.graph.delta).
_PATH = re.compile(
    r"^/v1\.0/users(?:/(?P<user>[^/(]+)|\('(?P<quoted>[^']+)'\))/calendarView"
    r"(?P<delta>/(?:microsoft\.graph\.)?delta(?:\(\))?)?$",
    re.IGNORECASE,
)
# "There are other OData query parameters that the delta function for calendarView
# doesn't support: $expand, $filter, $orderby, and $search", and "You cannot use $select".
DELTA_REFUSED = ("$select", "$expand", "$filter", "$orderby", "$search")


def _user(match: re.Match[str]) -> str:
    return unquote(match.group("user") or match.group("quoted")).lower()


@dataclass
class Answer:
    """One answered request: what it was, its status and the size of its body in bytes."""

    request: Request
    status: int
    body_bytes: int
    kind: str  # "calendarView", "delta" (a round's first request), "delta-token", "delta-page"
    room: str = ""
    body: bytes = b""

    def payload(self) -> dict[str, object]:
        return dict(json.loads(self.body))


@dataclass
class _SyncState:
    """What a delta token stands for: the room, the window, and what the client has seen."""

    room: str
    start: dt.datetime
    end: dt.datetime
    seen: dict[str, dict[str, object]]  # item id -> the items in the window, as Graph shows them
    elsewhere: dict[str, str]  # item id -> fingerprint of the room's items outside it


@dataclass
class _Round:
    """The pages of one round still to be sent, and the state its deltaLink will stand for."""

    items: list[dict[str, object]]
    final: _SyncState
    page_size: int
    offset: int = 0


class FakeGraph(FakeHTTPServer):
    """Graph's ``/users/{id}/calendarView`` (and its delta) over the shared fake rooms."""

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
        self.page_size = 10  # without $top (or, on delta, without odata.maxpagesize)
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
        # calendarView/delta
        self.delta_supported = True  # False: refused as for a resource without change tracking
        self.partial_updates = False  # True: a changed event comes as its id and what changed
        self.answers: list[Answer] = []
        self._delta_tokens: dict[str, _SyncState] = {}
        self._skip_tokens: dict[str, _Round] = {}
        self._resync_required = 0
        self._delta_lock = threading.Lock()

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

    def expire_delta_tokens(self) -> None:
        """Forget every delta and skip token, as Outlook's token cache drops old ones."""
        with self._delta_lock:
            self._delta_tokens.clear()
            self._skip_tokens.clear()

    def require_resync(self, count: int = 1) -> None:
        """Answer the next ``count`` requests with a token by a sync reset (410 Gone)."""
        with self._delta_lock:
            self._resync_required += count

    # -- request log ------------------------------------------------------------------
    def calendar_view_requests(self, room: str | None = None) -> list[Request]:
        """Requests for calendarView and for calendarView/delta, of one room or all."""
        with self._log_lock:
            found = [r for r in self.requests if _PATH.match(r.path)]
        if room is None:
            return found
        return [r for r in found if _user(_PATH.match(r.path)) == room]  # type: ignore[arg-type]

    def delta_requests(self, room: str | None = None) -> list[Request]:
        return [
            r
            for r in self.calendar_view_requests(room)
            if _PATH.match(r.path).group("delta")  # type: ignore[union-attr]
        ]

    def answers_for(self, room: str | None = None) -> list[Answer]:
        with self._log_lock:
            return [a for a in self.answers if room is None or a.room == room]

    def response_bytes(self, room: str | None = None) -> int:
        """Bytes of the bodies answered so far (to one room's requests, or to all)."""
        return sum(answer.body_bytes for answer in self.answers_for(room))

    def clear_log(self) -> None:
        super().clear_log()
        with self._log_lock:
            self.answers.clear()

    # -- protocol ---------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        match = _PATH.match(request.path)
        room = _user(match) if match else ""
        kind = "calendarView"
        if match and match.group("delta"):
            if request.arg("$deltatoken"):
                kind = "delta-token"
            elif request.arg("$skiptoken"):
                kind = "delta-page"
            else:
                kind = "delta"
        response = self._handle(request, match)
        body = response.encoded()
        answer = Answer(request, response.status, len(body), kind, room, body)
        with self._log_lock:
            self.answers.append(answer)
        return response

    def _handle(self, request: Request, match: re.Match[str] | None) -> Response:
        if request.method != "GET" or match is None:
            return error(400, "BadRequest", f"Resource not found for the segment '{request.path}'.")
        auth = request.header("authorization")
        token = auth[7:] if auth.lower().startswith("bearer ") else ""
        if not token:
            return error(
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
            return error(
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
            refused = self._refusal(_user(match), client_id, delegated=bool(issued.account))
            if refused is not None:
                return refused
            if match.group("delta"):
                return self._delta(request, _user(match))
            return self._calendar_view(request, _user(match))
        finally:
            with self._flight_lock:
                self.in_flight[client_id] -= 1

    def _refusal(self, user: str, client_id: str, *, delegated: bool = False) -> Response | None:
        """Throttling, permissions and scopes: the same for calendarView and its delta.

        Application permissions, RBAC scopes and access policies bind app-only tokens;
        a delegated token is refused by ``_delegated_refusal`` instead.
        """
        with self._throttle_lock:
            throttled = self._throttle.pop(0) if self._throttle else None
        if throttled is not None:
            status, retry_after = throttled
            code, message = (
                ("ApplicationThrottled", "Application is over its MailboxConcurrency limit.")
                if status == 429
                else ("ServiceUnavailable", "The service is temporarily unavailable.")
            )
            return error(status, code, message, headers={"Retry-After": str(retry_after)})
        if not delegated and (
            "Calendars.Read" not in self.permissions[client_id]
            and "Calendars.ReadWrite" not in self.permissions[client_id]
        ):
            return error(
                403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
            )
        if user not in self.rooms:
            return error(404, "ErrorInvalidUser", f"The requested user '{user}' is invalid.")
        allowed = None if delegated else self.scopes.get(client_id)
        if allowed is not None and user not in allowed:
            return error(
                403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
            )
        if not delegated and user in self.access_policy_blocked[client_id]:
            return error(
                403,
                "ErrorAccessDenied",
                "Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly "
                "AccessPolicy settings.",
            )
        return None

    def _window(self, request: Request) -> tuple[dt.datetime, dt.datetime] | Response:
        start_text = request.arg("startDateTime") or request.arg("startdatetime")
        end_text = request.arg("endDateTime") or request.arg("enddatetime")
        if not start_text or not end_text:
            return error(
                400,
                "ErrorInvalidParameter",
                "This request requires a time window specified by the query string parameters "
                "StartDateTime and EndDateTime.",
            )
        try:
            return parse_param(start_text), parse_param(end_text)
        except ValueError:
            return error(
                400,
                "ErrorInvalidParameter",
                "The value of StartDateTime or EndDateTime is invalid.",
            )

    def _zone(self, prefs: dict[str, str]) -> tuple[dt.tzinfo, str]:
        zone_name = self.answer_zone or prefs.get("outlook.timezone", "UTC")
        try:
            # Graph takes IANA and Windows names alike, and answers with the name it was given.
            iana = MS_TIMEZONE_TO_IANA_MAP.get(zone_name, zone_name)
            return (dt.UTC if zone_name == "UTC" else ZoneInfo(iana)), zone_name
        except (ZoneInfoNotFoundError, ValueError):
            return dt.UTC, "UTC"

    def _ordered(self, user: str, start: dt.datetime, end: dt.datetime) -> list[FakeEvent]:
        found = overlapping(self.rooms[user], start, end)
        # Graph lists single instances first, then the occurrences of series.
        return [e for e in found if not e.is_recurring] + [e for e in found if e.is_recurring]

    def _calendar_view(self, request: Request, user: str) -> Response:
        window = self._window(request)
        if isinstance(window, Response):
            return window
        start, end = window
        try:
            top = int(request.arg("$top", str(self.page_size)))
            skip = int(request.arg("$skip", "0"))
        except ValueError:
            return error(400, "BadRequest", "Invalid $top or $skip.")
        top = max(1, min(top, self.max_page_size))
        prefs = prefer(request.header("prefer"))
        zone, zone_name = self._zone(prefs)
        body_type = prefs.get("outlook.body-content-type", "html")

        ordered = self._ordered(user, start, end)
        page = ordered[skip : skip + top]
        names = [s for s in request.arg("$select").split(",") if s]
        value = [
            select(self._shown(event_json(e, user, zone, zone_name, body_type)), names)
            for e in page
        ]

        payload: dict[str, object] = {
            "@odata.context": f"{self.url}/v1.0/$metadata#users('{quote(user)}')/calendarView"
            + (f"({','.join(names)})" if names else ""),
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
        applied = [f'{k}="{v}"' for k, v in prefs.items() if k.startswith("outlook.")]
        if applied:
            headers["Preference-Applied"] = ", ".join(applied)
        return Response(200, json.dumps(payload), headers=headers, content_type=JSON)

    # -- calendarView/delta -------------------------------------------------------------
    def _delta(self, request: Request, user: str) -> Response:
        if not self.delta_supported:
            # What Graph answers for a resource without change tracking.
            return error(
                400,
                "BadRequest",
                "Unsupported request: Change tracking is not supported against "
                "'microsoft.graph.event'.",
            )
        for name in DELTA_REFUSED:
            if name in request.query:
                return error(
                    400,
                    "ErrorInvalidUrlQuery",
                    f"The query parameter '{name}' is not supported with change tracking over "
                    "the 'CalendarView' resource.",
                )
        prefs = prefer(request.header("prefer"))
        try:
            page_size = int(prefs.get("odata.maxpagesize", str(self.page_size)))
        except ValueError:
            page_size = self.page_size
        page_size = max(1, min(page_size, self.max_page_size))
        delta_token = request.arg("$deltatoken")
        skip_token = request.arg("$skiptoken")
        if skip_token:
            with self._delta_lock:
                pending = self._skip_tokens.pop(skip_token, None)
            if pending is None or pending.final.room != user:
                return self._sync_state_not_found()
            return self._delta_page(request, user, pending, prefs)
        if delta_token:
            with self._delta_lock:
                reset = self._resync_required > 0
                if reset:
                    self._resync_required -= 1
                known = self._delta_tokens.get(delta_token)
            if reset:
                # "410 (gone) and a Location header containing a request URL with an empty
                # $deltaToken (same as the initial query)": start again from scratch.
                location = f"{self.url}/v1.0/users('{quote(user)}')/calendarView/delta"
                if known is not None:
                    location += "?" + urlencode(
                        {"startDateTime": _param(known.start), "endDateTime": _param(known.end)}
                    )
                return error(
                    410,
                    "resyncRequired",
                    "The delta token is no longer valid, and the app must reset the sync state.",
                    headers={"Location": location},
                )
            if known is None or known.room != user:
                return self._sync_state_not_found()
            window = (known.start, known.end)
            if request.arg("startDateTime") or request.arg("endDateTime"):
                # The window is in the token; a state token cannot change it.
                asked = self._window(request)
                if isinstance(asked, Response) or asked != window:
                    return error(
                        400,
                        "ErrorInvalidParameter",
                        "The time window cannot be changed within a round of change tracking.",
                    )
            now = self._sync_state(user, *window)
            items = self._changes(user, known, now, prefs)
        else:
            asked = self._window(request)
            if isinstance(asked, Response):
                return asked
            now = self._sync_state(user, *asked)
            zone, zone_name = self._zone(prefs)
            body_type = prefs.get("outlook.body-content-type", "html")
            items = [
                self._delta_item(e, user, zone, zone_name, body_type)
                for e in self._ordered(user, *asked)
            ]
        return self._delta_page(request, user, _Round(items, now, page_size), prefs)

    def _delta_page(
        self, request: Request, user: str, pending: _Round, prefs: dict[str, str]
    ) -> Response:
        page = pending.items[pending.offset : pending.offset + pending.page_size]
        pending.offset += len(page)
        base = f"{self.url}/v1.0/users('{quote(user)}')/calendarView/delta"
        payload: dict[str, object] = {
            "@odata.context": f"{self.url}/v1.0/$metadata#Collection(event)",
            "value": page,
        }
        token = secrets.token_urlsafe(24)
        with self._delta_lock:
            if pending.offset < len(pending.items):
                self._skip_tokens[token] = pending
                payload["@odata.nextLink"] = f"{base}?$skiptoken={token}"
            else:
                self._delta_tokens[token] = pending.final
                payload["@odata.deltaLink"] = f"{base}?$deltatoken={token}"
        headers = {"request-id": str(uuid.uuid4())}
        applied = [f'{k}="{v}"' for k, v in prefs.items() if k.startswith("outlook.")]
        if "odata.maxpagesize" in prefs:
            applied.append(f"odata.maxpagesize={pending.page_size}")
        if applied:
            headers["Preference-Applied"] = ", ".join(applied)
        return Response(200, json.dumps(payload), headers=headers, content_type=JSON)

    def _sync_state_not_found(self) -> Response:
        # "In case of an expired token, the service should respond with a 40X-series error
        # with error codes such as syncStateNotFound" (delta-query-overview, Token duration).
        return error(
            410,
            "syncStateNotFound",
            "The sync state generation is not found. The delta token is expired and data "
            "must be synchronized again.",
        )

    def _delta_item(
        self, event: FakeEvent, user: str, zone: dt.tzinfo, zone_name: str, body_type: str
    ) -> dict[str, object]:
        return {
            "@odata.type": "#microsoft.graph.event",
            **self._shown(event_json(event, user, zone, zone_name, body_type)),
        }

    def _canonical(self, event: FakeEvent, user: str) -> dict[str, object]:
        return self._shown(event_json(event, user, dt.UTC, "UTC", "text"))

    def _fingerprint(self, event: FakeEvent, user: str) -> str:
        shown = self._canonical(event, user)
        return hashlib.sha1(json.dumps(shown, sort_keys=True).encode()).hexdigest()

    def _sync_state(self, user: str, start: dt.datetime, end: dt.datetime) -> _SyncState:
        inside = {id(e) for e in overlapping(self.rooms[user], start, end)}
        seen, elsewhere = {}, {}
        for event in self.rooms[user]:
            if id(event) in inside:
                seen[event.item_id] = self._canonical(event, user)
            else:
                elsewhere[event.item_id] = self._fingerprint(event, user)
        return _SyncState(user, start, end, seen, elsewhere)

    def _changes(
        self, user: str, before: _SyncState, now: _SyncState, prefs: dict[str, str]
    ) -> list[dict[str, object]]:
        zone, zone_name = self._zone(prefs)
        body_type = prefs.get("outlook.body-content-type", "html")
        items: list[dict[str, object]] = []
        for event in self._ordered(user, now.start, now.end):
            previous, current = before.seen.get(event.item_id), now.seen[event.item_id]
            if previous == current:
                continue
            item = self._delta_item(event, user, zone, zone_name, body_type)
            if self.partial_updates and previous is not None:
                # "Updated instances are represented by their id with at least the
                # properties that have been updated" (delta-query-overview).
                changed = {key for key in current if previous.get(key) != current[key]}
                changed |= {"id", "@odata.type", "@odata.etag"}
                item = {key: value for key, value in item.items() if key in changed}
            items.append(item)
        gone = [item_id for item_id in before.seen if item_id not in now.seen]
        # "Events that are outside the date range and that have been added, deleted, or
        # updated since the previous delta call" come as @removed too (event-delta).
        gone += [
            item_id
            for item_id, fingerprint in now.elsewhere.items()
            if before.elsewhere.get(item_id) != fingerprint and item_id not in gone
        ]
        gone += [
            item_id
            for item_id in before.elsewhere
            if item_id not in now.elsewhere and item_id not in now.seen and item_id not in gone
        ]
        for item_id in gone:
            items.append(
                {
                    "@odata.type": "#microsoft.graph.event",
                    "id": item_id,
                    "@removed": {"reason": "deleted"},
                }
            )
        return items

    def _shown(self, event: dict[str, object]) -> dict[str, object]:
        if event.get("id") in self.exceptions:
            event["type"] = "exception"
        return {key: value for key, value in event.items() if key not in self.omitted}


def _param(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _delegated_refusal(
    account: str, scopes: frozenset[str], user: str, graph: FakeGraph
) -> Response | None:
    """403 for a delegated token that may not read ``user``'s calendar."""
    denied = error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
    if user == account.lower():
        own = {"Calendars.Read", "Calendars.ReadWrite", "Calendars.Read.Shared"}
        return None if scopes & own else denied
    if not scopes & {"Calendars.Read.Shared", "Calendars.ReadWrite.Shared"}:
        return denied
    if user in graph.rooms and user not in graph.shared_with[account.lower()]:
        return denied
    return None
