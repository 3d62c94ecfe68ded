"""iCalendar files and URLs as a source (server type ``ics``).

A resource is an http(s) URL, or a path relative to the server's base URI
(itself a URL or a local folder); the empty resource is the base URI itself.
The file is read with ``icalendar``, its recurrences expanded in the window
with ``recurring_ical_events``, and each occurrence becomes an EventRecord,
so such a calendar merges with Exchange rooms in one feed.

URLs are fetched with a conditional GET (``If-None-Match`` /
``If-Modified-Since`` from ``MailboxState``); the last body is kept in this
process, so an unchanged origin costs a 304 and no download.

Credentials (the server's service account, or the calendar's own) go only to
the server's own origin, the scheme, host and port of its base URI (SPEC,
"Secrets"): a resource may name any URL, and whoever edits a calendar must not
be able to aim the service account's password at a listener of theirs.
``OriginBoundAuth`` decides on each request as requests prepared it (the URL
urllib3 connects to), and redirects are followed here, hop by hop, so each hop
is decided the same way: requests itself keeps the Authorization header on a
redirect from http to https on the same host, another origin.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import unquote, urljoin
from zoneinfo import ZoneInfo

import icalendar
import recurring_ical_events
import requests
from django.conf import settings
from requests.auth import HTTPBasicAuth
from requests.utils import requote_uri

from connector.core import metrics
from connector.core.errors import SourceError
from connector.core.network import network_error
from connector.core.records import EventRecord, Window
from connector.core.tls import trusted_session
from connector.core.trace import NullTrace, Step, Trace
from connector.validators import is_http_url, shown_url, split_url, url_origin

if TYPE_CHECKING:
    from connector.models import Calendar, Server

log = logging.getLogger(__name__)

MAX_BYTES = 20 * 1024 * 1024  # a calendar file larger than this is refused, not read
MAX_REDIRECTS = 5  # published links redirect once or twice; a loop ends here
SENSITIVITY = {"PUBLIC": "Normal", "PRIVATE": "Private", "CONFIDENTIAL": "Confidential"}
BUSY_STATUS = {
    "FREE": "Free",
    "TENTATIVE": "Tentative",
    "BUSY": "Busy",
    "OOF": "OOF",
    "WORKINGELSEWHERE": "WorkingElsewhere",
}

# (server pk, url) -> (etag, last modified, body): what a 304 lets us reuse.
_bodies: dict[tuple[int, str], tuple[str, str, bytes]] = {}
_sessions: dict[tuple[int, str], requests.Session] = {}
_lock = threading.Lock()


def clear_cache() -> None:
    """Forget kept bodies and sessions (as a new process starts)."""
    with _lock:
        _bodies.clear()
        for session in _sessions.values():
            session.close()
        _sessions.clear()


def _session(server: Server, username: str) -> requests.Session:
    with _lock:
        key = (server.pk, username)
        session = _sessions.get(key)
        if session is None:
            session = trusted_session()  # EXCHANGE_CA_BUNDLE's CAs (connector/core/tls.py)
            session.headers["User-Agent"] = "ews-calendar"
            session.headers["Accept"] = "text/calendar, */*;q=0.5"
            _sessions[key] = session
        return session


class OriginBoundAuth(HTTPBasicAuth):
    """HTTP Basic credentials that a request carries only to one origin.

    requests calls an auth object with the prepared request, whose URL is the one
    urllib3 connects to; any other origin gets the request without them.
    """

    def __init__(self, username: str, password: str, origin: tuple[str, str, int] | None) -> None:
        super().__init__(username, password)
        self.origin = origin

    def allows(self, url: str) -> bool:
        return self.origin is not None and url_origin(url) == self.origin

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if request.url is not None and self.allows(request.url):
            return super().__call__(request)
        return request


class IcsSource:
    """Reads an iCalendar file or URL and expands it in the window."""

    def __init__(
        self, server: Server, *, calendar: Calendar | None = None, trace: Trace | None = None
    ) -> None:
        self.server = server
        self.trace = trace or NullTrace()
        self.zone = calendar.tzinfo if calendar is not None else ZoneInfo(settings.TIME_ZONE)
        username, password = "", ""
        if calendar is not None and calendar.username:
            username, password = calendar.username, calendar.password
        elif server.service_account is not None:
            username = server.service_account.username
            password = server.service_account.password
        self.username = username
        self.auth = OriginBoundAuth(username, password, server.origin) if username else None
        self.upstream_key = f"ics:{server.pk}:{username}"

    # -- the one public method ------------------------------------------------------
    def fetch(
        self, resource: str, window: Window, *, include_body: bool = False
    ) -> list[EventRecord]:
        title = f"iCalendar {resource or self.server.base_uri or '(no resource)'}"
        with self.trace.step("fetch", title) as step:
            try:
                location = self._locate(resource)
                if isinstance(location, Path):
                    data = self._read_file(location, step)
                else:
                    data = self._download(location, resource, step)
                records = self._records(data, resource, window, include_body, step)
            except SourceError as error:
                error.resource = resource
                raise
            step.note(f"{len(records)} occurrence(s) in the window")
            step.data["items"] = len(records)
            return records

    # -- where the file is ----------------------------------------------------------
    def _locate(self, resource: str) -> str | Path:
        url = self.server.ics_url(resource)
        if url is not None:
            return url
        base = self.server.base_uri.strip()
        if not base:
            self._fail(
                f"{resource or '(empty)'} is neither a URL nor relative to a base URI.",
                code="ics-location",
                hint="Give the resource as a full http(s) URL, or set the server's base URI "
                "to the URL or folder the resources are relative to.",
            )
        file_url = split_url(base) if base.startswith("file:") else None
        folder = Path(unquote(file_url.path) if file_url is not None else base)
        folder = folder.resolve()
        path = (folder / resource).resolve() if resource else folder
        if path != folder and folder not in path.parents:
            self._fail(
                f"{resource} points outside the folder of server {self.server.server_id}.",
                code="ics-location",
                hint="Give a path inside the server's base folder (no '..', no absolute path).",
            )
        return path

    def _read_file(self, path: Path, step: Step) -> bytes:
        try:
            if path.stat().st_size > MAX_BYTES:
                self._too_large(str(path))
            data = path.read_bytes()
        except FileNotFoundError:
            self._fail(
                f"The file {path} does not exist.",
                code="ics-not-found",
                hint="Check the resource's path and the server's base folder.",
            )
        except IsADirectoryError:
            self._fail(
                f"{path} is a folder, not an iCalendar file.",
                code="ics-not-found",
                hint="Give the path of an .ics file as the resource.",
            )
        except PermissionError:
            self._fail(
                f"The file {path} cannot be read (permission denied).",
                code="ics-permission",
                hint="Let the user running ews-calendar read the file.",
            )
        step.note(f"read {len(data)} bytes from {path}")
        return data

    def _download(self, url: str, resource: str, step: Step) -> bytes:
        from connector.models import MailboxState

        # A server not saved (the admin's "Test connection") keeps no state: a plain GET.
        saved = self.server.pk is not None
        state = (
            MailboxState.objects.filter(server=self.server, mailbox=resource).first()
            if saved
            else None
        )
        cached = _bodies.get((self.server.pk, url)) if saved else None
        headers = {}
        # Validators are worth sending only when the body they stand for is at hand.
        if cached is not None and state is not None:
            etag, last_modified, _ = cached
            if state.etag and state.etag == etag:
                headers["If-None-Match"] = etag
            if state.last_modified and state.last_modified == last_modified:
                headers["If-Modified-Since"] = last_modified
        try:
            response = self._get(url, headers, step)
            with response:
                if response.status_code == 304 and cached is not None:
                    self._count("ok")
                    step.note(f"GET {_safe(url)}: 304 not modified, the last copy is reused")
                    return cached[2]
                if response.status_code != 200:
                    self._count("error")
                    raise self._http_error(response.status_code, response.url or url)
                data = _read_limited(response, url, self)
        except requests.RequestException as exc:
            self._count("error")
            error = network_error(exc, url, step="fetch")
            raise (error or SourceError(f"Could not read {_safe(url)}.")) from None
        self._count("ok")
        etag = response.headers.get("ETag", "")
        last_modified = response.headers.get("Last-Modified", "")
        step.note(f"GET {_safe(url)}: 200, {len(data)} bytes")
        if not saved:
            return data
        with _lock:
            if etag or last_modified:
                _bodies[(self.server.pk, url)] = (etag, last_modified, data)
            else:
                _bodies.pop((self.server.pk, url), None)
        if state is None or (state.etag, state.last_modified) != (etag, last_modified):
            MailboxState.objects.update_or_create(
                server=self.server,
                mailbox=resource,
                defaults={"etag": etag[:200], "last_modified": last_modified[:100]},
            )
        return data

    def _get(self, url: str, headers: dict[str, str], step: Step) -> requests.Response:
        """GET url, following redirects here so that each hop is checked for credentials."""
        session = _session(self.server, self.username)
        for _ in range(MAX_REDIRECTS + 1):
            if self.auth is not None and not self.auth.allows(url):
                step.note(
                    f"credentials not sent to {_safe(url)}: they go only to "
                    f"{self._origin_text()}, the origin of server {self.server.server_id}"
                )
            response = session.get(
                url,
                headers=headers,
                auth=self.auth,
                timeout=settings.EXCHANGE_REQUEST_TIMEOUT,
                stream=True,
                allow_redirects=False,
            )
            target = session.get_redirect_target(response)
            if target is None:
                return response
            response.close()
            location = requote_uri(urljoin(url, target))
            step.note(f"GET {_safe(url)}: {response.status_code}, redirected to {_safe(location)}")
            if not is_http_url(location):
                self._count("error")
                self._fail(
                    f"{_safe(url)} redirected to something that is not an http(s) URL.",
                    code="ics-redirect",
                    hint="Give the calendar's final http(s) URL as the resource.",
                )
            url = location
        self._count("error")
        self._fail(
            f"{_safe(url)}: more than {MAX_REDIRECTS} redirects.",
            code="ics-redirect",
            hint="The origin redirects in a loop, or too often: give the final URL.",
        )

    def _origin_text(self) -> str:
        origin = self.server.origin
        if origin is None:
            return "no origin (the server's base URI is not an http(s) URL)"
        scheme, host, port = origin
        return f"{scheme}://{host}:{port}"

    def _count(self, outcome: str) -> None:
        metrics.EXCHANGE_REQUESTS.labels(upstream=self.server.server_id, outcome=outcome).inc()

    # -- errors ---------------------------------------------------------------------
    def _fail(self, message: str, *, code: str, hint: str, retryable: bool = False) -> NoReturn:
        raise SourceError(message, code=code, hint=hint, retryable=retryable)

    def _too_large(self, where: str) -> NoReturn:
        self._fail(
            f"{where} is larger than {MAX_BYTES // (1024 * 1024)} MB.",
            code="ics-too-large",
            hint="Publish a smaller calendar (a shorter period) for the screens.",
        )

    def _http_error(self, status: int, url: str) -> SourceError:
        where = _safe(url)
        if status in (401, 403) and self.auth is not None and not self.auth.allows(url):
            return SourceError(
                f"{where} refused access ({status}); the credentials were not sent there.",
                code=f"http-{status}",
                hint=f"Credentials go only to the server's own origin ({self._origin_text()}). "
                "Give the resource as a path under the server's base URI, or give this "
                "origin a server of its own with its base URI and credentials.",
            )
        if status in (401, 403):
            return SourceError(
                f"{where} refused access ({status}).",
                code=f"http-{status}",
                hint="Set the username and password the origin expects (the server's service "
                "account, or the calendar's own), or use the calendar's published link.",
            )
        if status in (404, 410):
            return SourceError(
                f"{where} does not exist ({status}).",
                code="ics-not-found",
                hint="Check the URL: a published calendar link changes when publishing is "
                "stopped and started again.",
            )
        return SourceError(
            f"{where} answered {status}.",
            code=f"http-{status}",
            hint="The origin has a problem; a 5xx answer is usually brief.",
            retryable=status >= 500 or status == 429,
        )

    # -- iCalendar → records ----------------------------------------------------------
    def _records(
        self, data: bytes, resource: str, window: Window, include_body: bool, step: Step
    ) -> list[EventRecord]:
        try:
            calendar = icalendar.Calendar.from_ical(data)
        except ValueError as exc:
            log.info("not an iCalendar file from %s: %s", resource, exc)
            self._fail(
                f"{resource or self.server.base_uri} is not an iCalendar file.",
                code="ics-invalid",
                hint="The URL or file must give a text/calendar document (BEGIN:VCALENDAR); "
                "a login page or an HTML preview is not one.",
            )
        recurring = {
            str(event.get("UID"))
            for event in calendar.walk("VEVENT")
            if any(event.get(name) is not None for name in ("RRULE", "RDATE", "RECURRENCE-ID"))
        }
        try:
            occurrences = recurring_ical_events.of(calendar, skip_bad_series=True).between(
                window.start, window.end
            )
        except Exception as exc:  # the library raises several types for broken rules
            log.info("recurrences of %s cannot be expanded: %r", resource, exc)
            self._fail(
                f"The recurrences in {resource or self.server.base_uri} cannot be expanded.",
                code="ics-invalid",
                hint="The file has a malformed RRULE or time zone; check it with an iCalendar "
                "validator.",
            )
        records = []
        skipped = 0
        for event in occurrences:
            try:
                records.append(self._record(event, resource, recurring, include_body))
            except (AttributeError, TypeError, ValueError) as exc:
                # One malformed event (a broken DTSTART...) must not hide the others.
                skipped += 1
                log.info("skipping a malformed event of %s: %r", resource, exc)
        if skipped:
            step.note(f"{skipped} malformed event(s) skipped")
        return sorted(records, key=lambda r: (_sort_key(r.start), r.uid))

    def _record(
        self,
        event: icalendar.Event,
        resource: str,
        recurring: set[str],
        include_body: bool,
    ) -> EventRecord:
        start = event.get("DTSTART").dt
        end_prop = event.get("DTEND")
        if end_prop is not None:
            end = end_prop.dt
        elif event.get("DURATION") is not None:
            end = start + event.get("DURATION").dt
        else:
            end = start + dt.timedelta(days=1) if not isinstance(start, dt.datetime) else start
        all_day = not isinstance(start, dt.datetime)
        uid = str(event.get("UID") or "") or _made_uid(event)
        is_recurring = uid in recurring
        occurrence_id = ""
        if is_recurring and event.get("RECURRENCE-ID") is not None:
            occurrence_id = self._utc_or_date(event.get("RECURRENCE-ID").dt).isoformat()
        organizer = event.get("ORGANIZER")
        organizer_email = str(organizer or "")
        if organizer_email.lower().startswith("mailto:"):
            organizer_email = organizer_email[7:]
        organizer_name = str(organizer.params.get("CN", "")) if organizer is not None else ""
        status = str(event.get("STATUS") or "").upper()
        description = event.get("DESCRIPTION")
        # Without METHOD, DTSTAMP is when the event was last revised (RFC 5545 3.8.7.2).
        modified = event.get("LAST-MODIFIED") or event.get("DTSTAMP")
        return EventRecord(
            uid=uid,
            occurrence_id=occurrence_id,
            resource=resource,
            subject=str(event.get("SUMMARY") or ""),
            start=start if all_day else self._utc_or_date(start),
            end=end if all_day else self._utc_or_date(end),
            all_day=all_day,
            location=str(event.get("LOCATION") or ""),
            organizer_name=organizer_name,
            organizer_email=organizer_email,
            sensitivity=SENSITIVITY.get(str(event.get("CLASS") or "PUBLIC").upper(), "Private"),
            importance=_importance(event.get("PRIORITY")),
            free_busy=_free_busy(event, status),
            is_cancelled=status == "CANCELLED",
            is_draft=False,
            is_meeting=event.get("ATTENDEE") is not None,
            is_recurring=is_recurring,
            categories=_categories(event),
            body=(str(description) if description is not None else "") if include_body else None,
            last_modified=self._utc_or_date(modified.dt) if modified is not None else None,  # type: ignore[arg-type]
        )

    def _utc_or_date(self, value: dt.datetime | dt.date) -> Any:
        """Aware UTC for date-times (floating ones read in the calendar's zone)."""
        if not isinstance(value, dt.datetime):
            return value
        if value.tzinfo is None:
            value = value.replace(tzinfo=self.zone)
        return value.astimezone(dt.UTC)


_safe = shown_url  # the URL as messages show it: no user:password@, no query


def _read_limited(response: requests.Response, url: str, source: IcsSource) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(64 * 1024):
        size += len(chunk)
        if size > MAX_BYTES:
            source._too_large(_safe(url))
        chunks.append(chunk)
    return b"".join(chunks)


def _made_uid(event: icalendar.Event) -> str:
    """A stable UID for an event without one (RFC 5545 requires it; some files lack it)."""
    seed = f"{event.get('DTSTART').to_ical()!r}{event.get('SUMMARY')}"
    return hashlib.sha256(seed.encode()).hexdigest()[:40] + "@ews-calendar"


def _importance(priority: Any) -> str:
    try:
        value = int(priority) if priority is not None else 0
    except (TypeError, ValueError):
        return "Normal"
    if 1 <= value <= 4:
        return "High"
    if 6 <= value <= 9:
        return "Low"
    return "Normal"


def _free_busy(event: icalendar.Event, status: str) -> str:
    busy = str(event.get("X-MICROSOFT-CDO-BUSYSTATUS") or "").upper()
    if busy in BUSY_STATUS:
        return BUSY_STATUS[busy]
    if str(event.get("TRANSP") or "").upper() == "TRANSPARENT":
        return "Free"
    if status == "TENTATIVE":
        return "Tentative"
    return "Busy"


def _categories(event: icalendar.Event) -> tuple[str, ...]:
    found: list[str] = []
    values = event.get("CATEGORIES")
    if values is None:
        return ()
    for prop in values if isinstance(values, list) else [values]:
        found.extend(str(category) for category in getattr(prop, "cats", [prop]))
    return tuple(found)


def _sort_key(value: dt.datetime | dt.date) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    return dt.datetime.combine(value, dt.time(), tzinfo=dt.UTC)
