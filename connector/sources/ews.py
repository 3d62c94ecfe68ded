"""Room calendars through Exchange Web Services (exchangelib).

On premises a delegate (service) account reads each room mailbox over NTLM,
Basic, Digest or Negotiate; in Exchange Online an app registration's OAuth
token impersonates each room. Either way, reading a room costs ONE request
once connected: a FindItem with a CalendarView on the distinguished folder
``calendar`` of the room's mailbox (never a folder looked up by its localized
name, never a GetFolder first). The server version that exchangelib would
otherwise probe for in every new process is learned once and kept on the
Server row; connections (exchangelib Protocols with their TCP sessions, so
NTLM authenticates a connection once) are pooled per server, credential and
configuration. With ``include_body`` one GetItem per 100 events follows, since
EWS never returns bodies from FindItem.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import html
import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests
from django.conf import settings
from django.utils import timezone
from exchangelib import (
    BASIC,
    DELEGATE,
    DIGEST,
    IMPERSONATION,
    NTLM,
    OAUTH2,
    Account,
    Configuration,
    Credentials,
    EWSDateTime,
    Identity,
    OAuth2Credentials,
)
from exchangelib.errors import (
    ErrorCalendarViewRangeTooBig,
    ErrorExceededFindCountLimit,
    ErrorInvalidSchemaVersionForMailboxVersion,
    ErrorInvalidServerVersion,
    ErrorSchemaValidation,
    RateLimitError,
    ResponseMessageError,
    TransportError,
)
from exchangelib.ewsdatetime import UTC as EWS_UTC
from exchangelib.fields import FieldPath
from exchangelib.items import ID_ONLY, SHALLOW, CalendarItem
from exchangelib.properties import CalendarView, DistinguishedFolderId, Mailbox
from exchangelib.protocol import FaultTolerance, Protocol, close_connections
from exchangelib.services import ConvertId, FindItem, GetItem
from exchangelib.util import TNS, is_xml
from exchangelib.version import EXCHANGE_2010, EXCHANGE_2013, Build, Version
from exchangelib.winzone import MS_TIMEZONE_TO_IANA_MAP

from accounts.tokens import AccessToken, acquire_token, discard_token
from connector.core.errors import SourceError
from connector.core.metrics import EXCHANGE_REQUESTS
from connector.core.network import network_error
from connector.core.records import EventRecord, Window
from connector.core.trace import NullTrace, Trace
from connector.models import Calendar, Server
from connector.models.servers import EXCHANGE_ONLINE_EWS_HOSTS
from connector.sources.ews_errors import ErrorContext, EwsHttpError, source_error

log = logging.getLogger(__name__)

# gssnegotiate: exchangelib's Kerberos support (GSSAPI) needs requests-gssapi, system
# Kerberos libraries and a ticket of the machine, and ignores the configured password.
# What the configured account can do is NTLM inside Negotiate: requests-ntlm answers a
# server that offers only "Negotiate" with NTLM tokens in the Negotiate header, which
# IIS accepts. So gssnegotiate authenticates as NTLM-in-Negotiate, never Kerberos.
AUTH_TYPES = {"ntlm": NTLM, "basic": BASIC, "digest": DIGEST, "gssnegotiate": NTLM}
RETRY_WAIT = 1  # seconds before retrying a transient failure (doubles each time)
GET_ITEM_CHUNK = 100  # items per GetItem when bodies are asked for
MAX_VIEW_SPLITS = 6  # halvings of a calendar view too big for Exchange (1/64 of the window)
AUTODISCOVER_PATH = "/autodiscover/autodiscover.json/v1.0/{mailbox}?Protocol=EWS"

_FIND_FIELDS = (
    "subject",
    "sensitivity",
    "categories",
    "importance",
    "is_draft",
    "last_modified_time",
    "uid",
    "start",
    "end",
    "original_start",
    "is_all_day",
    "legacy_free_busy_status",
    "location",
    "is_meeting",
    "is_cancelled",
    "is_recurring",
    "type",
    "organizer",
)


def _field(name: str) -> FieldPath:
    return FieldPath(field=CalendarItem.get_field_by_fieldname(name))


# How Exchange refuses a version in a plain (not SOAP) HTTP 500, as exchangelib knows it.
VERSION_REFUSALS = (
    b"The specified server version is invalid",
    b"ErrorInvalidSchemaVersionForMailboxVersion",
)
# What the source reads with when Exchange will not say its version (see _learn_version).
ASSUMED_VERSION = Version(build=Build(14, 2), api_version="Exchange2010_SP2")


def _find_fields(version: Version) -> list[FieldPath]:
    fields = [_field(name) for name in _FIND_FIELDS]
    # All-day events come as UTC instants of the mailbox zone's midnights: its zone
    # turns them back into dates.
    if version.build is None or version.build >= EXCHANGE_2010:
        fields += [_field("_start_timezone"), _field("_end_timezone")]
    return fields


# -- exchangelib, configured for a bounded refresh -------------------------------------


class RefreshRetryPolicy(FaultTolerance):
    """exchangelib's FaultTolerance, bounded by the deadline of the fetch in progress.

    It honours ErrorServerBusy/BackOffMilliseconds (and retries transient failures)
    only while the wait fits before the deadline; beyond, it gives up at once rather
    than sleeping past the refresh's time bound. An HTTP error that is not SOAP
    fails at once with its status: FaultTolerance would take a 401 for throttling and
    retry a wrong password until max_wait.
    """

    def __init__(self) -> None:
        super().__init__(max_wait=settings.REFRESH_TIMEOUT)
        self._local = threading.local()

    @contextmanager
    def deadline(self, at: float) -> Iterator[None]:
        previous = getattr(self._local, "deadline", None)
        self._local.deadline = at
        try:
            yield
        finally:
            self._local.deadline = previous

    def back_off(self, seconds: float | None) -> None:
        wait = self.DEFAULT_BACKOFF if seconds is None else seconds
        deadline = getattr(self._local, "deadline", None)
        if deadline is not None and time.monotonic() + wait > deadline:
            if getattr(self._local, "status", None) == 503:
                # Not EWS throttling (that is a SOAP ErrorServerBusy): IIS or a load
                # balancer saying the EWS application is unavailable.
                raise EwsHttpError(503)
            raise RateLimitError("Back-off beyond the refresh deadline", wait=wait)
        super().back_off(wait)

    def raise_response_errors(self, response: requests.Response) -> None:
        status = response.status_code
        self._local.status = status
        soap_fault = status == 500 and bool(response.content) and is_xml(response.content)
        if status == 500 and any(text in response.content for text in VERSION_REFUSALS):
            # A version refusal that is not SOAP: exchangelib raises it so as to walk down
            # the versions.
            super().raise_response_errors(response)
        if status == 500 and not soap_fault and _is_soap(response.content):
            # A SOAP fault exchangelib's quick test misses (no XML declaration and another
            # prefix than s:): parsed all the same, so its ResponseCode is reported.
            return
        if status >= 400 and status != 503 and not soap_fault:
            raise EwsHttpError(
                status,
                authenticate=response.headers.get("WWW-Authenticate", ""),
                diagnostics=response.headers.get("x-ms-diagnostics", ""),
            )
        super().raise_response_errors(response)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_local", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._local = threading.local()


def _is_soap(content: bytes) -> bool:
    head = content[:400].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"<") and b"http://schemas.xmlsoap.org/soap/envelope/" in head


class OwnCalendarId(DistinguishedFolderId):
    """``calendar`` without a mailbox: Exchange resolves the authenticated account's own."""

    def clean(self, version: Version | None = None) -> None:
        super(DistinguishedFolderId, self).clean(version=version)


class SchemaOfTheServer:
    """No TimeZoneContext header for Exchange 2007: the header came with Exchange 2010.

    exchangelib sends the account's zone with every mailbox request, whatever the
    version; a server validating the request against the 2007 schema refuses it. Every
    instant is asked and read in UTC anyway, so leaving it out changes nothing else.
    """

    protocol: Protocol
    account: Account

    @property
    def _timezone(self) -> Any:
        version = self.protocol.config.version
        if version is not None and version.build is not None and version.build < EXCHANGE_2010:
            return None
        return self.account.default_timezone


class CalendarViewItems(SchemaOfTheServer, FindItem):
    """FindItem with a CalendarView that keeps each item's raw Start and End.

    exchangelib turns all-day events into dates by subtracting a day from the end
    before converting it to the mailbox zone, which lands on the wrong day when the
    clocks change on the last day of the event; the raw instants avoid that.
    A CalendarView has no paging in EWS: one answer holds the whole window (up to the
    server's EWSFindCountLimit), so every answer is the last page.
    """

    truncated = False
    # A message of ResponseClass="Warning" did its work: keep the items it carries.
    WARNINGS_TO_IGNORE_IN_RESPONSE = ResponseMessageError

    def _elem_to_obj(self, elem: Any) -> Any:
        zones = []
        for name in ("StartTimeZone", "EndTimeZone"):
            # Read here, not by exchangelib: it fails the whole answer on a zone id such
            # as "tzone://Microsoft/Custom" (a mailbox in a customized time zone).
            child = elem.find(f"{{{TNS}}}{name}")
            zones.append(_zone(child.get("Id") or child.get("Name")) if child is not None else None)
            if child is not None:
                elem.remove(child)
        raw = (elem.findtext(f"{{{TNS}}}Start"), elem.findtext(f"{{{TNS}}}End"), *zones)
        for name in ("Start", "End", "OriginalStart", "RecurrenceId", "LastModifiedTime"):
            # exchangelib makes an instant with milliseconds None: each is rewritten as
            # whole seconds in UTC (the raw text is kept above).
            child = elem.find(f"{{{TNS}}}{name}")
            if child is not None and child.text:
                instant = _raw_instant(child.text)
                if instant is not None:
                    child.text = instant.strftime("%Y-%m-%dT%H:%M:%SZ")
        return super()._elem_to_obj(elem), raw

    def _get_paging_values(self, elem: Any) -> tuple[int, None]:  # type: ignore[override]
        if (elem.get("IncludesLastItemInRange") or "true").lower() == "false":
            self.truncated = True
        return int(elem.get("TotalItemsInView") or 0), None


class ItemsWithBodies(SchemaOfTheServer, GetItem):
    """GetItem in the schema of the server (see SchemaOfTheServer)."""


# -- credentials and the connection pool ------------------------------------------------


@dataclass(frozen=True)
class _Credential:
    """Who reads: HTTP credentials (on premises) or an app registration (OAuth)."""

    oauth: bool
    username: str = ""  # HTTP: the account; OAuth: the app's client id
    password: str = field(default="", repr=False)
    app_id: int | None = None
    app_version: str = ""  # app_registration.updated: a new secret makes a new pool entry

    @property
    def fingerprint(self) -> str:
        """Stable across processes, never reveals the password."""
        if self.oauth:
            return f"app{self.app_id}"
        digest = hmac.new(
            settings.SECRET_KEY.encode(), self.password.encode(), hashlib.sha256
        ).hexdigest()[:12]
        return f"{self.username.lower()}:{digest}"


@dataclass
class _Connection:
    config: Configuration
    protocol: Protocol
    policy: RefreshRetryPolicy
    credentials: Credentials | OAuth2Credentials
    accounts: dict[str, Account] = field(default_factory=dict)
    token: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


_pool: dict[tuple[Any, ...], _Connection] = {}
_pool_lock = threading.Lock()
_semaphores: dict[tuple[str, int], threading.BoundedSemaphore] = {}


def reset_pool() -> None:
    """Forget every pooled connection, as a new process starts without any."""
    with _pool_lock:
        connections = list(_pool.values())
        _pool.clear()
    for connection in connections:
        _close(connection)
    close_connections()  # exchangelib's own cache of Protocols


def _close(connection: _Connection) -> None:
    try:
        connection.protocol.close()
    except Exception:  # closing sockets must never break a refresh
        log.debug("Closing an EWS connection failed", exc_info=True)


def _semaphore(key: str) -> threading.BoundedSemaphore:
    limit = settings.EWS_MAX_CONCURRENCY
    with _pool_lock:
        semaphore = _semaphores.get((key, limit))
        if semaphore is None:
            semaphore = _semaphores[(key, limit)] = threading.BoundedSemaphore(limit)
        return semaphore


def _stored_version(text: str) -> Version | None:
    try:
        parts = [int(part) for part in text.split(".")]
        return Version(build=Build(*parts[:4]))
    except (TypeError, ValueError):
        return None


# An item's raw Start and End (EWS text) and its start and end zones, when known.
RawTimes = tuple[str | None, str | None, ZoneInfo | None, ZoneInfo | None]


def _zone(ms_id: str | None) -> ZoneInfo | None:
    """The zone of a Windows (or IANA) zone id; None for a customized or unknown one."""
    if not ms_id:
        return None
    if ms_id.lower() in ("utc", "tzone://microsoft/utc"):
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(MS_TIMEZONE_TO_IANA_MAP.get(ms_id, ms_id))
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _utc(value: dt.datetime) -> dt.datetime:
    return dt.datetime.fromtimestamp(value.timestamp(), tz=dt.UTC)


def _raw_instant(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:  # EWS means UTC when it writes no offset
        value = value.replace(tzinfo=dt.UTC)
    return _utc(value)


def _local_date(instant: dt.datetime, zone: Any) -> dt.date:
    if zone is not None:
        local = instant.astimezone(zone)
    else:
        # Without the zone: a local midnight is within 12 hours of its day's UTC midnight.
        local = instant + dt.timedelta(hours=12)
    return dt.date(local.year, local.month, local.day)  # a plain date, not exchangelib's


def autodiscover_urls(target: str) -> list[str]:
    """Where the Autodiscover v2 JSON endpoint may answer for a server's autodiscover value.

    A URL names the host; a mailbox names its domain, tried as autodiscover.<domain>
    and then <domain> itself, as Outlook does.
    """
    target = target.strip()
    if "://" in target:
        parts = urlsplit(target)
        return [f"{parts.scheme}://{parts.netloc}"]
    domain = target.rpartition("@")[2].lower()
    return [f"https://autodiscover.{domain}", f"https://{domain}"]


class EwsSource:
    """Reads room calendars from one EWS server with one credential."""

    def __init__(
        self, server: Server, *, calendar: Calendar | None = None, trace: Trace | None = None
    ) -> None:
        self.server = server
        self.trace = trace or NullTrace()
        self.credential = self._credential(server, calendar)
        self.upstream_key = f"ews:{server.pk}:{self.credential.fingerprint}"

    # -- public ---------------------------------------------------------------------
    def fetch(
        self, resource: str, window: Window, *, include_body: bool = False
    ) -> list[EventRecord]:
        deadline = time.monotonic() + settings.REFRESH_TIMEOUT
        semaphore = _semaphore(self.upstream_key)
        if not semaphore.acquire(timeout=settings.REFRESH_TIMEOUT):
            raise SourceError(
                f"Too many reads of {self.server} are already running.",
                code="concurrency",
                hint="Every slot for this account (EWS_MAX_CONCURRENCY) stayed busy for the "
                "whole refresh: Exchange is slow. Raise REFRESH_TIMEOUT or cachePersistence.",
                retryable=True,
                resource=resource,
            )
        try:
            return self._fetch_following_endpoint(resource, window, include_body, deadline)
        finally:
            semaphore.release()

    # -- steps ----------------------------------------------------------------------
    def _fetch_following_endpoint(
        self, resource: str, window: Window, include_body: bool, deadline: float
    ) -> list[EventRecord]:
        endpoint = self._endpoint(resource)
        try:
            return self._fetch(endpoint, resource, window, include_body, deadline)
        except SourceError as error:
            if not self._discovered or error.code not in (
                "connection",
                "dns",
                "endpoint-not-found",
            ):
                raise
            # The endpoint autodiscover gave us failed: it may have moved. Look it up again
            # (once) and retry there if it changed.
            log.info(
                "EWS endpoint %s of %s failed (%s); autodiscovering again",
                endpoint,
                self.server,
                error.code,
            )
            try:
                fresh = self._discover(resource, failed=endpoint)
            except SourceError:
                raise error from None  # the endpoint's failure is the news, not autodiscover's
            if fresh == endpoint:
                raise
            return self._fetch(fresh, resource, window, include_body, deadline)

    def _fetch(
        self, endpoint: str, resource: str, window: Window, include_body: bool, deadline: float
    ) -> list[EventRecord]:
        ctx = self._context(endpoint, resource)
        token = self._token(endpoint) if self.credential.oauth else None
        connection: _Connection | None = None
        with self.trace.step("connect", f"Connect to {ctx.host}") as step:
            try:
                connection = self._connection(endpoint, resource, step)
                if token is not None:
                    self._use_token(connection, token)
                account = self._account(connection, resource)
                with connection.policy.deadline(deadline):
                    self._learn_version(connection, step)
            except Exception as exc:
                error = self._failure(exc, ctx, "connect")
                if error.code == "token-rejected" and connection is not None:
                    self._forget_token(connection)
                raise error from exc
        title = f"Fetch {resource or 'own calendar'}"
        with self.trace.step("fetch", title) as step:
            try:
                with connection.policy.deadline(deadline):
                    found = self._find(account, resource, window)
                    if include_body and found:
                        records = self._with_bodies(account, found)
                    else:
                        records = [record for record, _ in found]
            except Exception as exc:
                error = self._failure(exc, ctx, "fetch")
                if error.code == "token-rejected":
                    self._forget_token(connection)
                if error.code == "schema":
                    self._forget_version(connection)
                raise error from exc
            step.note(f"{len(records)} events")
            step.data["count"] = len(records)
            self._remember_version(account)
        return records

    def _failure(self, exc: BaseException, ctx: ErrorContext, step: str) -> SourceError:
        error = source_error(exc, ctx)
        if error.step == "fetch":
            error.step = step
        EXCHANGE_REQUESTS.labels(upstream=self.server.server_id, outcome=error.code).inc()
        return error

    # -- credentials ----------------------------------------------------------------
    @staticmethod
    def _credential(server: Server, calendar: Calendar | None) -> _Credential:
        if calendar is not None and calendar.username:
            return _Credential(oauth=False, username=calendar.username, password=calendar.password)
        if server.app_registration_id and server.app_registration is not None:
            app = server.app_registration
            return _Credential(
                oauth=True,
                username=app.client_id,
                app_id=app.pk,
                app_version=app.updated.isoformat() if app.updated else "",
            )
        if server.service_account_id and server.service_account is not None:
            account = server.service_account
            return _Credential(oauth=False, username=account.username, password=account.password)
        raise SourceError(
            f"The server {server} has no credentials.",
            code="no-credentials",
            hint="Choose a service account (on premises) or an app registration (Exchange "
            "Online) for this server in the admin.",
            step="connect",
        )

    @property
    def _delegated(self) -> bool:
        app = self.server.app_registration if self.credential.oauth else None
        return bool(app is not None and app.flow == app.Flow.DELEGATED)

    def _context(self, endpoint: str, resource: str) -> ErrorContext:
        host = urlsplit(endpoint).hostname or endpoint
        return ErrorContext(
            endpoint=endpoint,
            host=urlsplit(endpoint).netloc or endpoint,
            resource=resource,
            account=self.credential.username,
            oauth=self.credential.oauth,
            exchange_online=host.lower() in EXCHANGE_ONLINE_EWS_HOSTS,
            scheme="oauth" if self.credential.oauth else self.server.http_scheme,
        )

    # -- the endpoint ---------------------------------------------------------------
    @property
    def _discovered(self) -> bool:
        return bool(self.server.autodiscover and not self.server.base_uri)

    def _endpoint(self, resource: str) -> str:
        if not self.server.base_uri and not self.server.autodiscover:
            raise SourceError(
                f"The server {self.server} has neither a base URI nor an autodiscover value.",
                code="no-endpoint",
                hint="Give the base URI of Exchange (https://mail.example.com) or a mailbox "
                "for autodiscover in the server's settings.",
                step="connect",
            )
        if not self._discovered:
            base = self.server.base_uri.rstrip("/")
            if base.lower().endswith("/ews/exchange.asmx"):
                return base
            return f"{base}/EWS/Exchange.asmx"
        if self.server.ews_endpoint:
            return self.server.ews_endpoint
        return self._discover(resource)

    def _discover(self, resource: str, failed: str = "") -> str:
        """Find the EWS URL with Autodiscover v2 and remember it on the server."""
        target = self.server.autodiscover
        candidates = [
            target if "://" not in target else "",
            resource,
            self.credential.username,
        ]
        mailbox = next((c for c in candidates if "@" in c), "")
        with self.trace.step("autodiscover", "Find the EWS endpoint (Autodiscover)") as step:
            if not mailbox:
                raise SourceError(
                    "Autodiscover needs a mailbox address to look up.",
                    code="autodiscover",
                    hint="Give a mailbox (someone@example.com) as the server's autodiscover "
                    "value, or a resource, or set the base URI instead.",
                    step="autodiscover",
                )
            problems: list[str] = []
            for base in autodiscover_urls(target):
                url = base + AUTODISCOVER_PATH.format(mailbox=quote(mailbox, safe="@"))
                try:
                    response = requests.get(
                        url,
                        timeout=settings.EXCHANGE_REQUEST_TIMEOUT,
                        headers={"Accept": "application/json"},
                        allow_redirects=True,
                    )
                    answer = response.json() if response.ok else {}
                    found = str(answer.get("Url") or "") if isinstance(answer, dict) else ""
                except (requests.RequestException, ValueError) as exc:
                    error = network_error(exc, base, step="autodiscover")
                    problems.append(f"{base}: {error.message if error else type(exc).__name__}")
                    continue
                if not found:
                    problems.append(f"{base}: HTTP {response.status_code}")
                    continue
                if urlsplit(found).scheme != "https" and urlsplit(base).scheme == "https":
                    # Credentials never go in clear text to where an answer points.
                    problems.append(f"{base}: refused the non-HTTPS endpoint {found}")
                    continue
                step.note(f"{mailbox} → {found}")
                if failed:
                    step.note(f"replaces {failed}, which failed")
                Server.objects.filter(pk=self.server.pk).update(
                    ews_endpoint=found, ews_endpoint_discovered=timezone.now()
                )
                self.server.ews_endpoint = found
                self.server.ews_endpoint_discovered = timezone.now()
                return found
            raise SourceError(
                f"Autodiscover found no EWS endpoint for {mailbox}.",
                code="autodiscover",
                hint="Tried " + "; ".join(problems) + ". Check the autodiscover DNS record "
                "(autodiscover.<domain>) and that Autodiscover v2 answers "
                "/autodiscover/autodiscover.json, or set the server's base URI instead.",
                retryable=True,
                step="autodiscover",
            )

    # -- connections ----------------------------------------------------------------
    def _connection(self, endpoint: str, resource: str, step: Any) -> _Connection:
        server = self.server
        prefix = (server.pk, self.credential.fingerprint)
        key = (
            *prefix,
            self.credential.app_version,
            server.updated.isoformat() if server.updated else "",
            endpoint,
        )
        with _pool_lock:
            connection = _pool.get(key)
            if connection is None:
                stale = [k for k in _pool if k[:2] == prefix]
                old = [_pool.pop(k) for k in stale]
                connection = _pool[key] = self._connect(endpoint, resource)
                step.note(f"new connection to {endpoint}")
            else:
                old = []
                step.note(f"pooled connection to {endpoint}")
        for previous in old:
            _close(previous)
        return connection

    def _connect(self, endpoint: str, resource: str) -> _Connection:
        credentials: Credentials | OAuth2Credentials
        if self.credential.oauth:
            app = self.server.app_registration
            assert app is not None
            credentials = OAuth2Credentials(
                client_id=app.client_id,
                client_secret="",  # never used: tokens come from msal (accounts.tokens)
                tenant_id=app.tenant,
                identity=Identity(primary_smtp_address=resource) if resource else None,
            )
            auth_type = OAUTH2
        else:
            credentials = Credentials(self.credential.username, self.credential.password)
            auth_type = AUTH_TYPES.get(self.server.http_scheme, NTLM)
        policy = RefreshRetryPolicy()
        config = Configuration(
            service_endpoint=endpoint,
            credentials=credentials,
            auth_type=auth_type,
            version=_stored_version(self.server.ews_version),
            retry_policy=policy,
            max_connections=settings.EWS_MAX_CONCURRENCY,
        )
        # exchangelib caches Protocols by endpoint and credentials only: drop any it holds
        # for an older configuration of this server (another scheme, version, timeout).
        try:
            del Protocol[config]
        except KeyError:
            pass
        protocol = Protocol(config=config)
        protocol.TIMEOUT = settings.EXCHANGE_REQUEST_TIMEOUT
        protocol.RETRY_WAIT = RETRY_WAIT
        return _Connection(config=config, protocol=protocol, policy=policy, credentials=credentials)

    def _token(self, endpoint: str) -> AccessToken:
        """The app's token for this Exchange; msal's cache serves it until shortly before expiry."""
        app = self.server.app_registration
        assert app is not None
        return acquire_token(app, f"https://{urlsplit(endpoint).netloc}/.default", trace=self.trace)

    def _use_token(self, connection: _Connection, token: AccessToken) -> None:
        with connection.lock:
            if token.token == connection.token:
                return
            credentials = connection.credentials
            assert isinstance(credentials, OAuth2Credentials)
            expires_at = token.expires_at.timestamp()
            with credentials.lock:
                # Sessions made with the previous token renew themselves when it expires
                # (exchangelib compares the credentials' signature).
                credentials.access_token = {
                    "access_token": token.token,
                    "token_type": "Bearer",
                    "expires_at": expires_at,
                    "expires_in": max(0, int(expires_at - time.time())),
                }
            connection.token = token.token

    def _forget_token(self, connection: _Connection) -> None:
        """Exchange refused the token: the next fetch asks the identity platform anew."""
        app = self.server.app_registration
        if app is not None and connection.token:
            discard_token(app, connection.token)
        with connection.lock:
            connection.token = ""

    def _account(self, connection: _Connection, resource: str) -> Account:
        with connection.lock:
            account = connection.accounts.get(resource)
            if account is not None:
                return account
        if resource:
            address = resource
        elif self.credential.oauth and not self._delegated:
            raise SourceError(
                "An app registration has no calendar of its own.",
                code="resource-required",
                hint="Give the calendar at least one resource (the room's SMTP address).",
                step="connect",
            )
        elif self._delegated:
            app = self.server.app_registration
            address = app.account if app is not None else ""
        else:
            address = self.credential.username
        if "@" not in address:
            raise SourceError(
                f"The account {address} has no SMTP address to read its own calendar with.",
                code="resource-required",
                hint="Write the username as user@domain (its UPN), or add the account's "
                "mailbox address as a resource.",
                step="connect",
            )
        impersonate = self.credential.oauth and not self._delegated
        account = Account(
            primary_smtp_address=address,
            config=connection.config,
            access_type=IMPERSONATION if impersonate else DELEGATE,
            default_timezone=EWS_UTC,
            locale="en_US",
        )
        account.protocol = connection.protocol  # exactly this server's configuration
        with connection.lock:
            return connection.accounts.setdefault(resource, account)

    def _learn_version(self, connection: _Connection, step: Any) -> None:
        if connection.config.version and connection.config.version.build:
            step.note(f"Exchange {connection.config.version.build} (remembered)")
            return
        # exchangelib's probe (a ConvertId whose answer carries ServerVersionInfo): once.
        try:
            version = connection.protocol.version
        except TransportError as exc:
            if _refused_for_its_version(exc):
                version = _guess_older_version(connection.protocol)
            elif _no_version_told(exc):
                # The probe's answers carried no ServerVersionInfo (a server or proxy that
                # serves no ConvertId): read as the oldest Exchange with every property the
                # view asks for; the calendar view's own answer names the real version.
                connection.protocol.config.version = ASSUMED_VERSION
                step.note(f"Exchange version not told; reading as {ASSUMED_VERSION.api_version}")
                return
            else:
                raise
        step.note(f"Exchange {version.build} (learned)")
        self._store_version(str(version.build))

    def _remember_version(self, account: Account) -> None:
        build = account.version.build if account.version else None
        if build is ASSUMED_VERSION.build:
            return  # nothing learned: never store a guess
        if build is not None and str(build) != self.server.ews_version:
            self._store_version(str(build))

    def _forget_version(self, connection: _Connection) -> None:
        """Exchange refused the schema of the remembered version: learn it again next time."""
        with connection.lock:
            connection.protocol.config.version = None
            connection.accounts.clear()  # each Account keeps its copy of the version
        self._store_version("")

    def _store_version(self, build: str) -> None:
        # .update() leaves Server.updated alone: learning is not a configuration change.
        Server.objects.filter(pk=self.server.pk).update(ews_version=build)
        self.server.ews_version = build

    # -- requests -------------------------------------------------------------------
    def _find(
        self, account: Account, resource: str, window: Window
    ) -> list[tuple[EventRecord, tuple[str, str]]]:
        """The events of the window, each with its (item id, change key)."""
        if resource:
            folder = DistinguishedFolderId(id="calendar", mailbox=Mailbox(email_address=resource))
        else:
            folder = OwnCalendarId(id="calendar")
        items = self._view(account, folder, window.start, window.end, splits=0)
        records = []
        seen: set[str] = set()
        for item, raw in items:
            if item.id in seen:  # an event across a split point is in both halves
                continue
            seen.add(item.id)
            record = self._record(item, raw, resource or account.primary_smtp_address)
            records.append((record, (item.id, item.changekey)))
        EXCHANGE_REQUESTS.labels(upstream=self.server.server_id, outcome="ok").inc()
        return records

    def _view(
        self, account: Account, folder: Any, start: dt.datetime, end: dt.datetime, splits: int
    ) -> list[tuple[Any, RawTimes]]:
        """The items of one CalendarView; halves of it when Exchange will not give it whole.

        A CalendarView cannot be paged: a room holding more events than the server's
        EWSFindCountLimit (1000 by default) in the window is answered with the first
        ones only (IncludesLastItemInRange="false") or with ErrorExceededFindCountLimit,
        and a range Exchange finds too long with ErrorCalendarViewRangeTooBig. Each half
        of the window is then read on its own, so no event is silently lost.
        """
        service = CalendarViewItems(account=account, timeout=settings.EXCHANGE_REQUEST_TIMEOUT)
        view = CalendarView(
            start=EWSDateTime.from_datetime(start.astimezone(dt.UTC)),
            end=EWSDateTime.from_datetime(end.astimezone(dt.UTC)),
        )
        splittable = splits < MAX_VIEW_SPLITS and end - start > dt.timedelta(hours=1)
        try:
            results = list(
                service.call(
                    folders=[folder],
                    additional_fields=_find_fields(account.version),
                    restriction=None,
                    order_fields=None,
                    shape=ID_ONLY,
                    query_string=None,
                    depth=SHALLOW,
                    calendar_view=view,
                    max_items=None,
                    offset=0,
                )
            )
            failure = next((r for r in results if isinstance(r, Exception)), None)
            if failure is not None:
                raise failure
        except (ErrorExceededFindCountLimit, ErrorCalendarViewRangeTooBig) as exc:
            if not splittable:
                raise
            log.info("Exchange refused the view %s–%s whole (%s): halving it", start, end, exc)
            return self._halves(account, folder, start, end, splits)
        if service.truncated:
            if splittable:
                log.info("Exchange cut the view %s–%s short: halving it", start, end)
                return self._halves(account, folder, start, end, splits)
            log.warning(
                "Exchange returned only the first %s events of %s–%s (EWSFindCountLimit)",
                len(results),
                start,
                end,
            )
        return results

    def _halves(
        self, account: Account, folder: Any, start: dt.datetime, end: dt.datetime, splits: int
    ) -> list[tuple[Any, RawTimes]]:
        middle = start + (end - start) / 2
        return self._view(account, folder, start, middle, splits + 1) + self._view(
            account, folder, middle, end, splits + 1
        )

    def _with_bodies(
        self, account: Account, found: list[tuple[EventRecord, tuple[str, str]]]
    ) -> list[EventRecord]:
        modern = account.version.build is None or account.version.build >= EXCHANGE_2013
        body_field = "text_body" if modern else "body"
        records = [record for record, _ in found]
        ids = [item_id for _, item_id in found]
        service = ItemsWithBodies(
            account=account, chunk_size=GET_ITEM_CHUNK, timeout=settings.EXCHANGE_REQUEST_TIMEOUT
        )
        items = service.call(
            items=ids,
            additional_fields={_field(body_field), _field("organizer")},
            shape=ID_ONLY,
        )
        enriched = []
        for record, item in zip(records, items, strict=True):
            if isinstance(item, Exception):
                # The item went away between FindItem and GetItem: keep it without a body.
                enriched.append(replace(record, body=""))
                continue
            body = getattr(item, body_field) or ""
            if not modern and getattr(body, "body_type", "") == "HTML":
                body = _html_to_text(str(body))
            name, email = _organizer(item.organizer)
            enriched.append(
                replace(
                    record,
                    body=str(body),
                    organizer_name=name or record.organizer_name,
                    organizer_email=email or record.organizer_email,
                )
            )
        EXCHANGE_REQUESTS.labels(upstream=self.server.server_id, outcome="ok").inc()
        return enriched

    # -- mapping --------------------------------------------------------------------
    def _record(self, item: Any, raw: RawTimes, resource: str) -> EventRecord:
        start: dt.datetime | dt.date
        end: dt.datetime | dt.date
        raw_start, raw_end = _raw_instant(raw[0]), _raw_instant(raw[1])
        zone = raw[2]
        if item.is_all_day and raw_start is not None and raw_end is not None:
            start = _local_date(raw_start, zone)
            end = _local_date(raw_end, raw[3] or zone)
            if end <= start:
                end = start + dt.timedelta(days=1)
        else:
            start = raw_start or _utc(item.start)
            end = raw_end or _utc(item.end)
        recurring = bool(item.is_recurring) or item.type in ("Occurrence", "Exception")
        occurrence_id = ""
        if recurring:
            # The occurrence's original start in UTC, as the Graph source names it too.
            original = item.original_start or raw_start
            if isinstance(original, dt.datetime):
                occurrence_id = _utc(original).isoformat()
        name, email = _organizer(item.organizer)
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
            last_modified=_utc(item.last_modified_time) if item.last_modified_time else None,
        )


def _guess_older_version(protocol: Protocol) -> Version:
    """The probe again, from each older RequestServerVersion down.

    exchangelib walks down the versions when Exchange answers ErrorInvalidServerVersion;
    a server that fails a version it does not know in schema validation instead (or in
    a plain HTTP 500 page) would stop the walk at the first (newest) one.
    """
    for api_version in ConvertId.supported_api_versions()[1:]:
        try:
            return Version.guess(protocol, api_version_hint=api_version)
        except TransportError as exc:
            if not _refused_for_its_version(exc):
                raise
    raise ErrorSchemaValidation("The server refused every RequestServerVersion in the probe")


def _no_version_told(exc: TransportError) -> bool:
    """The probe's answers named no version, and refused nothing but the probe itself.

    Any other refusal (impersonation denied, a bad account) is the news, not the version.
    """
    if not str(exc).startswith("No valid version headers"):
        return False
    cause = exc.__cause__ or exc.__context__
    return cause is None or isinstance(cause, ErrorInvalidServerVersion)


def _refused_for_its_version(exc: BaseException) -> bool:
    """A refusal exchangelib does not walk down on (schema validation, a plain HTTP 500).

    Its probe wraps the server's refusal in a TransportError.
    """
    link: BaseException | None = exc
    while link is not None:
        if isinstance(link, ErrorSchemaValidation | ErrorInvalidSchemaVersionForMailboxVersion):
            return True
        link = link.__cause__ or link.__context__
    return False


def _organizer(mailbox: Any) -> tuple[str, str]:
    """Name and SMTP address; X500 (EX) addresses, as FindItem may give, are no address."""
    if mailbox is None:
        return "", ""
    address = mailbox.email_address or ""
    routing = (mailbox.routing_type or "SMTP").upper()
    if routing != "SMTP" or "@" not in address:
        address = ""
    return mailbox.name or "", address


def _html_to_text(markup: str) -> str:
    """Exchange 2010 has no TextBody: a plain reading of the HTML body."""
    text = re.sub(r"(?is)<(script|style).*?</\1>", "", markup)
    text = re.sub(r"(?i)<br\s*/?>|</p>|</div>", "\n", text)
    text = re.sub(r"<[^>]+>", "", text)
    return html.unescape(text).strip()
