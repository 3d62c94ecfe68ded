"""Room calendars through Microsoft Graph: ``GET /users/{room}/calendarView``.

App-only OAuth2 (``Calendars.Read`` application permission), or a delegated
sign-in reading the rooms its account has rights on (``Calendars.Read.Shared``
delegated permission, same URL). Every page is
followed to the end: Graph lists the occurrences of recurring meetings after
the single events, so stopping at the first page silently loses them. At most
``GRAPH_MAX_CONCURRENCY`` requests per app registration are in flight in this
process, whatever the number of rooms and calendars (Graph allows 4 for
Outlook resources); ``429``/``503`` ``Retry-After`` is honoured within the
refresh's time bound.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests
from django.conf import settings
from exchangelib.winzone import MS_TIMEZONE_TO_IANA_MAP

from accounts.models import AppRegistration
from accounts.tokens import acquire_token, discard_token, token_scope
from connector.core import metrics
from connector.core.errors import SourceError
from connector.core.network import network_error
from connector.core.records import EventRecord, Window
from connector.core.trace import NullTrace, Trace
from connector.models.servers import GRAPH_DEFAULT_BASE_URI

if TYPE_CHECKING:
    from connector.models import Calendar, Server

log = logging.getLogger(__name__)

# Only what an EventRecord needs: smaller answers, faster pages.
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
PAGE_SIZE = 100  # $top: fewer pages than Graph's default of 10
MAX_PAGES = 500  # a guard against a nextLink loop, far above any room's week
MAX_RETRIES = 4  # throttled or unavailable answers retried per request
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

_sessions: dict[int, requests.Session] = {}
_slots: dict[tuple[int, int], threading.BoundedSemaphore] = {}
_pool_lock = threading.Lock()


def _session(app: AppRegistration) -> requests.Session:
    """One pooled HTTP session per app registration, reused across refreshes."""
    with _pool_lock:
        session = _sessions.get(app.pk)
        if session is None:
            session = requests.Session()
            adapter = requests.adapters.HTTPAdapter(
                pool_connections=4, pool_maxsize=max(settings.GRAPH_MAX_CONCURRENCY, 4)
            )
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            session.headers["User-Agent"] = "ews-calendar"
            _sessions[app.pk] = session
        return session


def _slot(app: AppRegistration) -> threading.BoundedSemaphore:
    """The process-wide limit of concurrent Graph requests of one app registration."""
    limit = settings.GRAPH_MAX_CONCURRENCY
    with _pool_lock:
        return _slots.setdefault((app.pk, limit), threading.BoundedSemaphore(limit))


class GraphSource:
    """Reads room mailboxes' calendars through Microsoft Graph."""

    def __init__(
        self,
        server: Server,
        *,
        calendar: Calendar | None = None,
        trace: Trace | None = None,
        deadline: float | None = None,
    ) -> None:
        self.server = server
        self.app = server.app_registration
        self.trace = trace or NullTrace()
        self.base = (server.base_uri or GRAPH_DEFAULT_BASE_URI).rstrip("/")
        # App-only: .default (Calendars.Read); delegated: Calendars.Read.Shared.
        self.scope = token_scope(self.app, self.base, "graph") if self.app else ""
        self.delegated = bool(self.app and self.app.flow == AppRegistration.Flow.DELEGATED)
        # time.monotonic() after which no retry is waited for; None: REFRESH_TIMEOUT per fetch
        self.deadline = deadline
        # The calendar's own username/password mean nothing to Graph: the app reads.
        app_key = self.app.pk if self.app is not None else "none"
        self.upstream_key = f"graph:{self.base}:{app_key}"

    # -- the one public method ------------------------------------------------------
    def fetch(
        self, resource: str, window: Window, *, include_body: bool = False
    ) -> list[EventRecord]:
        title = f"Graph calendarView of {resource or '(no resource)'}"
        if self.app is None:
            self._refuse(
                title,
                SourceError(
                    f"Server {self.server.server_id} has no app registration.",
                    code="no-credentials",
                    hint="Microsoft Graph needs an app registration with the Calendars.Read "
                    "application permission: choose one on the server.",
                    step="connect",
                ),
            )
        if not resource:
            self._refuse(
                title,
                SourceError(
                    "Microsoft Graph with app-only access has no calendar of its own.",
                    code="no-resource",
                    hint="Give the room mailbox's SMTP address as a resource of the calendar "
                    "(e.g. room-101@contoso.com).",
                    step="fetch",
                ),
            )
        deadline = self.deadline or time.monotonic() + settings.REFRESH_TIMEOUT
        token = acquire_token(self.app, self.scope, trace=self.trace).token
        with self.trace.step("fetch", title) as step:
            try:
                events, pages, requests_sent = self._read(
                    resource, window, include_body, token, deadline, step.note
                )
            except SourceError as error:
                error.resource = resource
                raise
            records = [self._record(event, resource, include_body) for event in events]
            step.note(f"{pages} page(s), {len(records)} item(s), {requests_sent} request(s)")
            step.data.update(pages=pages, items=len(records), requests=requests_sent)
            return records

    def _refuse(self, title: str, error: SourceError) -> NoReturn:
        """Raise an error found before any request, recorded as a failed step."""
        with self.trace.step("fetch", title):
            raise error

    # -- HTTP -----------------------------------------------------------------------
    def _read(
        self,
        resource: str,
        window: Window,
        include_body: bool,
        token: str,
        deadline: float,
        note: Any,
    ) -> tuple[list[dict[str, Any]], int, int]:
        assert self.app is not None
        select = SELECT + ("body",) if include_body else SELECT
        url: str | None = f"{self.base}/v1.0/users/{quote(resource)}/calendarView"
        params: dict[str, str] | None = {
            "startDateTime": _graph_param(window.start),
            "endDateTime": _graph_param(window.end),
            "$select": ",".join(select),
            "$top": str(PAGE_SIZE),
        }
        prefer = ['outlook.timezone="UTC"']
        if include_body:
            prefer.append('outlook.body-content-type="text"')
        headers = {"Prefer": ", ".join(prefer), "Accept": "application/json"}
        events: list[dict[str, Any]] = []
        pages = sent = 0
        token_refreshed = False
        while url is not None:
            if pages >= MAX_PAGES:
                raise SourceError(
                    f"Graph returned more than {MAX_PAGES} pages for {resource}.",
                    code="too-many-pages",
                    hint="Shorten the calendar's request window.",
                )
            response, count = self._get(url, params, headers, token, deadline, note)
            sent += count
            if response.status_code == 401 and not token_refreshed:
                # A token the resource refuses (revoked, audience changed): one new one.
                discard_token(self.app, token)
                token = acquire_token(self.app, self.scope, trace=self.trace).token
                token_refreshed = True
                continue
            if response.status_code != 200:
                raise self._http_error(response, resource)
            try:
                payload = response.json()
                events.extend(payload["value"])
            except (ValueError, KeyError, TypeError) as exc:
                raise SourceError(
                    "Graph answered something that is not a calendar view "
                    f"({exc.__class__.__name__}).",
                    code="bad-response",
                    hint="A proxy may be answering instead of Microsoft Graph: check the "
                    "server's base URI (https://graph.microsoft.com).",
                    retryable=True,
                ) from None
            pages += 1
            url = payload.get("@odata.nextLink")
            params = None  # the next link carries every parameter
            if url is not None and _origin(url) != _origin(self.base):
                # Our bearer token goes with the request: never to another host.
                raise SourceError(
                    f"Graph's next page of {resource} points to another host.",
                    code="bad-response",
                    hint="Something between this server and Microsoft Graph rewrites its "
                    "answers: check the base URI and any proxy.",
                )
        return events, pages, sent

    def _get(
        self,
        url: str,
        params: dict[str, str] | None,
        headers: dict[str, str],
        token: str,
        deadline: float,
        note: Any,
    ) -> tuple[requests.Response, int]:
        """One GET within the concurrency limit, retrying throttled answers in time."""
        assert self.app is not None
        session = _session(self.app)
        slot = _slot(self.app)
        sent = 0
        for attempt in range(MAX_RETRIES + 1):
            timeout = min(settings.EXCHANGE_REQUEST_TIMEOUT, max(deadline - time.monotonic(), 1))
            with slot:
                try:
                    response = session.get(
                        url,
                        params=params,
                        headers={**headers, "Authorization": f"Bearer {token}"},
                        timeout=timeout,
                    )
                except requests.RequestException as exc:
                    self._count("error")
                    error = network_error(exc, url, step="fetch")
                    raise (error or SourceError(f"Graph request failed: {exc!r}")) from None
            sent += 1
            status = response.status_code
            if status not in (429, 503, 504):
                self._count("ok" if status < 400 else "error")
                return response, sent
            self._count("throttled")
            wait = _retry_after(response, attempt)
            if attempt == MAX_RETRIES or time.monotonic() + wait > deadline:
                return response, sent
            note(f"Graph answered {status}; waiting {wait:g} s (Retry-After) before retrying")
            log.info("graph %s for %s: retrying after %s s", status, self.server.server_id, wait)
            time.sleep(wait)  # outside the slot: a waiting request holds no place
        raise AssertionError("unreachable")

    def _count(self, outcome: str) -> None:
        metrics.EXCHANGE_REQUESTS.labels(upstream=self.server.server_id, outcome=outcome).inc()

    # -- errors ---------------------------------------------------------------------
    def _http_error(self, response: requests.Response, resource: str) -> SourceError:
        status = response.status_code
        try:
            error = response.json().get("error", {})
            code, message = str(error.get("code", "")), str(error.get("message", ""))
        except (ValueError, AttributeError):
            code, message = "", ""
        client_id = self.app.client_id if self.app else ""
        if status == 403:
            if self.delegated:
                account = self.app.account if self.app else ""
                hint = (
                    f"A delegated sign-in reads the rooms {account} has rights on, with the "
                    "delegated permission Calendars.Read.Shared (Entra ID → App registrations "
                    "→ API permissions → Microsoft Graph → Delegated, with consent). Give the "
                    f"account at least Reviewer on the room's calendar: "
                    f"Add-MailboxFolderPermission -Identity {resource}:\\Calendar -User "
                    f"{account} -AccessRights Reviewer."
                )
            elif "AccessPolicy" in message or "[RAOP]" in message:
                hint = (
                    "An application access policy keeps this app from the room. In Exchange "
                    "Online PowerShell, check with Get-ApplicationAccessPolicy and "
                    f"Test-ApplicationAccessPolicy -Identity {resource} -AppId {client_id}, and "
                    "add the room to the policy's mail-enabled security group (or move to RBAC "
                    "for Applications)."
                )
            else:
                hint = (
                    "Grant the app the Calendars.Read APPLICATION permission for Microsoft "
                    "Graph and give admin consent (Entra ID → App registrations → API "
                    "permissions). If it is granted, the app's RBAC for Applications management "
                    "scope (or a legacy application access policy) does not include this room: "
                    f"check with Test-ServicePrincipalAuthorization -Identity {client_id} "
                    f"-Resource {resource}, and Get-ApplicationAccessPolicy."
                )
            return SourceError(
                f"Microsoft Graph denied access to the calendar of {resource} ({code or 403}).",
                code=code or "ErrorAccessDenied",
                hint=hint,
                resource=resource,
            )
        if status == 404 or code in ("ErrorInvalidUser", "ResourceNotFound"):
            return SourceError(
                f"Microsoft Graph does not know the mailbox {resource} ({code or 404}).",
                code=code or "ErrorInvalidUser",
                hint="Check the room's primary SMTP address (Exchange admin center → "
                "Resources, or Get-Mailbox -RecipientTypeDetails RoomMailbox).",
                resource=resource,
            )
        if status == 401:
            return SourceError(
                "Microsoft Graph refused the access token (InvalidAuthenticationToken).",
                code=code or "InvalidAuthenticationToken",
                hint="The token was issued for another resource or cloud: the server's base "
                "URI must match the identity authority (https://graph.microsoft.com with "
                "https://login.microsoftonline.com; national clouds have their own pair).",
                resource=resource,
            )
        if status in (429, 503, 504):
            return SourceError(
                f"Microsoft Graph is throttling or unavailable ({status} {code}).",
                code="throttled" if status == 429 else f"http-{status}",
                hint="Graph asked to wait longer than this refresh may take. It will be "
                "retried by the next refresh; if it keeps happening, lower the number of "
                "rooms per app registration or raise cachePersistence.",
                retryable=True,
                resource=resource,
            )
        return SourceError(
            f"Microsoft Graph answered {status} {code}: {message[:200]}".rstrip(": "),
            code=code or f"http-{status}",
            hint="Check the server's base URI and the room's address; a 5xx answer is "
            "Microsoft's side and usually brief.",
            retryable=status >= 500,
            resource=resource,
        )

    # -- mapping --------------------------------------------------------------------
    def _record(self, event: dict[str, Any], resource: str, include_body: bool) -> EventRecord:
        all_day = bool(event.get("isAllDay"))
        start = _graph_time(event["start"])
        end = _graph_time(event["end"])
        kind = str(event.get("type") or "singleInstance")
        recurring = kind in ("occurrence", "exception")
        occurrence_id = ""
        if recurring:
            # The original start names the occurrence; an occurrence Graph sends without
            # one (never moved) is named by its start, as the EWS source does.
            original = event.get("originalStart")
            occurrence_id = (_parse_utc(original) if original else start).isoformat()
        organizer = (event.get("organizer") or {}).get("emailAddress") or {}
        body: str | None = None
        if include_body:
            body = ((event.get("body") or {}).get("content")) or ""
        modified = event.get("lastModifiedDateTime")
        return EventRecord(
            uid=_series_uid(str(event.get("iCalUId") or event.get("id") or ""), recurring),
            occurrence_id=occurrence_id,
            resource=resource,
            subject=str(event.get("subject") or ""),
            start=_graph_date(event["start"]) if all_day else start,
            end=_graph_date(event["end"]) if all_day else end,
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
            last_modified=_parse_utc(modified) if modified else None,
        )


def _origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port, with the scheme's default port made explicit."""
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme.lower())
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or default


def _graph_param(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_utc(text: str) -> dt.datetime:
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


def _graph_time(value: dict[str, str]) -> dt.datetime:
    """A dateTimeTimeZone; we ask for UTC, but honour another zone if Graph sends one."""
    parsed = _parse_utc(value["dateTime"]).replace(tzinfo=None)
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


def _graph_date(value: dict[str, str]) -> dt.date:
    """An all-day event's day: its midnight in whatever zone Graph answers in, unconverted."""
    parsed = dt.datetime.fromisoformat(value["dateTime"].strip()[:19])
    return dt.date(parsed.year, parsed.month, parsed.day)


def _series_uid(uid: str, recurring: bool) -> str:
    """The series' UID (as EWS gives it) from an occurrence's iCalUId."""
    if recurring and uid.upper().startswith(GOID_PREFIX) and len(uid) >= 40:
        return uid[:32] + "00000000" + uid[40:]
    return uid


def _retry_after(response: requests.Response, attempt: int) -> float:
    header = response.headers.get("Retry-After", "")
    try:
        return max(float(header), 0.0)
    except ValueError:
        return float(min(2**attempt, 30))  # no (readable) Retry-After: back off
