"""Every place where the EWS source reaches inside exchangelib, in one module.

Why this module is long: every exchangelib override is here on purpose, so that an
exchangelib upgrade is checked in one place (tests/test_ews_protocol_overrides.py).

exchangelib's public API cannot bound a request by the deadline of a refresh,
read a room's calendar view in one request without looking folders up, keep the
raw instants of all-day events, or take every token from msal; so the source
subclasses a few of its classes and uses a few of its internals. They are all
here, so that an exchangelib upgrade is checked in one place:
tests/test_ews_protocol_overrides.py fails, naming the override, when the
installed exchangelib no longer has what one relies on, and pyproject.toml keeps
exchangelib below the first version that test has not passed with. The rest of
the package uses exchangelib's public API (Account, Configuration, Credentials,
OAuth2Credentials, Protocol.version, the exception classes).

What it relies on, as of exchangelib 5.5.1 to 5.6.0:

- ``FaultTolerance``: ``back_off(seconds)``, ``raise_response_errors(response)``,
  ``DEFAULT_BACKOFF``, and ``__getstate__``/``__setstate__`` returning and taking
  the instance's dict (RefreshRetryPolicy); the bytes by which
  ``RetryPolicy.raise_response_errors`` recognises a version refused in a plain
  HTTP 500 (VERSION_REFUSALS).
- ``EWSAccountService._timezone``, the property ``EWSService.wrap`` reads for the
  TimeZoneContext header, and ``EWSService._get_soap_parts(response)``, which
  parses ``response.iter_content()`` and touches nothing else of the response
  (SchemaOfTheServer).
- ``FindItem.get_payload`` and its parameters, and the payload it makes: a
  CalendarView whose StartDate and EndDate are ``util.value_to_xml_text`` of the
  view's instants, and ParentFolderIds holding the DistinguishedFolderId and its
  Mailbox (CalendarViewItems copies the first payload of each kind);
- ``FindItem._elem_to_obj(elem)``, called by ``_elems_to_objs`` for each item;
  ``EWSService.WARNINGS_TO_IGNORE_IN_RESPONSE``, the warnings whose message still
  carries its items; ``EWSPagingService._get_paging_values(elem)``, called by
  ``_get_page`` for ``(item_count, next_offset)`` (CalendarViewItems).
- ``FindItem.call`` and ``GetItem.call`` and their parameter names
  (find_item_arguments, get_item_arguments); the private CalendarItem fields
  ``_start_timezone`` and ``_end_timezone``, asked for so that Exchange sends
  StartTimeZone and EndTimeZone (find_fields).
- ``DistinguishedFolderId.clean``, which refuses a distinguished folder without a
  mailbox; OwnCalendarId calls the clean of its parent class instead.
- ``Protocol``'s cache (the CachingProtocol metaclass), keyed by endpoint and
  credentials only: ``del Protocol[config]`` drops an entry; ``TIMEOUT`` and
  ``RETRY_WAIT``, read from the Protocol instance (open_protocol).
- ``OAuth2Credentials``: the property ``access_token`` (a dict as oauthlib's token),
  which ``Protocol.close_session`` sets to None and ``session_params()`` reads for
  each new session; ``refresh(session)``, called by ``Protocol.refresh_credentials``
  when a session's token expired; ``lock``; ``client``, the one oauthlib client whose
  ``token`` every session of the Protocol adds to its requests; and
  ``Protocol.create_oauth2_session``, which fetches a token itself only when the
  session got none, and renews it on its own only with a client secret (MsalCredentials).
- ``Protocol.create_session()``, which for GSSAPI gives the session an auth that
  ignores the credentials; KerberosProtocol replaces that auth by one with the
  service account's own ticket (kerberos.py, which relies on requests-gssapi's
  ``generate_request_header``, ``handle_response`` and ``context``, checked by
  tests/test_kerberos.py).
- ``BaseProtocol.raw_session(prefix, ...)``, the classmethod that makes every
  session of a Protocol, a ``requests.Session`` (EwsProtocol).
- ``BaseProtocol.HTTP_ADAPTER_CLS``, the adapter class mounted on each session
  (ExchangeAdapter: the trusted CAs of connector/core/tls.py, and a place among the
  account's requests in flight for each request: slots.py).
- ``EWSDateTime.from_string(date_string)``, the classmethod DateTimeField.from_xml
  reads every instant with: replaced by one that reads ``...Z`` instants without
  ``strptime`` (its lock serialised the rooms read at once) and hands anything else
  to exchangelib's (_instant_from_string).
- ``Version.guess(protocol, api_version_hint)``, which probes with a ConvertId from
  ``ConvertId.supported_api_versions()[0]`` down and raises
  ``TransportError("No valid version headers ...")`` when no answer names a
  version (guess_older_version, no_version_told).

Outside this module, and checked by the same tests: ``Account()`` asks nothing of
the server, its ``version`` is resolved when first used (since 5.5.1: source.py makes
the Account before version.learn_version probes), and is a copy of
``Protocol.version`` sharing its Build (version.remember_version tells the assumed
version by it); ``exchangelib.winzone.MS_TIMEZONE_TO_IANA_MAP`` maps Windows zone ids
(mapping.zone_of).
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from exchangelib import Account, Configuration, EWSDateTime, Identity, OAuth2Credentials
from exchangelib.errors import (
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
from exchangelib.properties import CalendarView, DistinguishedFolderId
from exchangelib.protocol import BaseProtocol, FaultTolerance, Protocol
from exchangelib.services import ConvertId, FindItem, GetItem
from exchangelib.transport import GSSAPI
from exchangelib.util import MNS, TNS, is_xml, value_to_xml_text
from exchangelib.version import EXCHANGE_2010, Version

from connector.core import budget
from connector.core.errors import SourceError
from connector.core.tls import TrustedAdapter
from connector.sources.ews import kerberos, slots
from connector.sources.ews.errors import EwsHttpError
from connector.sources.ews.mapping import FoundItem, found_item

log = logging.getLogger(__name__)

RETRY_WAIT = 1  # seconds before retrying a transient failure (doubles each time)
GET_ITEM_CHUNK = 100  # items per GetItem when bodies are asked for

# How Exchange refuses a version in a plain (not SOAP) HTTP 500, as exchangelib knows it.
VERSION_REFUSALS = (
    b"The specified server version is invalid",
    b"ErrorInvalidSchemaVersionForMailboxVersion",
)


# -- the retry policy: bounded by the refresh's deadline --------------------------------


class RefreshRetryPolicy(FaultTolerance):
    """exchangelib's FaultTolerance, bounded by the deadline of the fetch in progress.

    It honours ErrorServerBusy/BackOffMilliseconds (and retries transient failures)
    only while the wait fits before the deadline; beyond, it gives up at once rather
    than sleeping past the refresh's time bound. An HTTP error that is not SOAP
    fails at once with its status: FaultTolerance would take a 401 for throttling and
    retry a wrong password until max_wait. Inside a budget without retries (the test
    console, connector.core.budget) it fails fast: a busy Exchange is tried once and
    its ErrorServerBusy, with the BackOffMilliseconds it asked for, is the answer.
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

    @property
    def fail_fast(self) -> bool:
        return not budget.retries_allowed()

    @property
    def back_off_until(self) -> dt.datetime | None:
        if not budget.retries_allowed():
            return None  # tried once: no waiting for an earlier back-off either
        until: dt.datetime | None = super().back_off_until
        return until

    @back_off_until.setter
    def back_off_until(self, value: dt.datetime | None) -> None:
        FaultTolerance.back_off_until.fset(self, value)  # type: ignore[attr-defined]

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


# -- the one request a room costs: FindItem with a CalendarView ---------------------------


class OwnCalendarId(DistinguishedFolderId):
    """``calendar`` without a mailbox: Exchange resolves the authenticated account's own."""

    def clean(self, version: Version | None = None) -> None:
        super(DistinguishedFolderId, self).clean(version=version)


class _Read:
    """An answer read in full: ``iter_content()`` gives its bytes in one piece."""

    def __init__(self, content: bytes) -> None:
        self.content = content

    def iter_content(self) -> Iterator[bytes]:
        return iter((self.content,))


class SchemaOfTheServer:
    """No TimeZoneContext header for Exchange 2007: the header came with Exchange 2010.

    exchangelib sends the account's zone with every mailbox request, whatever the
    version; a server validating the request against the 2007 schema refuses it. Every
    instant is asked and read in UTC anyway, so leaving it out changes nothing else.

    The answer is read in full, its place among the account's requests in flight given
    back (slots.py, ExchangeAdapter), and then parsed: exchangelib parses
    ``response.iter_content()`` as it streams in, by default one byte a call.
    """

    protocol: Protocol
    account: Account

    @classmethod
    def _get_soap_parts(cls, response: requests.Response) -> Any:
        # The whole answer is read while the place is held; it is parsed after.
        content = response.content
        slots.leave()
        return super()._get_soap_parts(_Read(content))  # type: ignore[misc]

    @property
    def _timezone(self) -> Any:
        version = self.protocol.config.version
        if version is not None and version.build is not None and version.build < EXCHANGE_2010:
            return None
        return self.account.default_timezone


class CalendarViewItems(SchemaOfTheServer, FindItem):
    """FindItem with a CalendarView whose items are mapping.FoundItems (raw Start and End).

    exchangelib turns all-day events into dates by subtracting a day from the end
    before converting it to the mailbox zone, which lands on the wrong day when the
    clocks change on the last day of the event; the raw instants avoid that.
    A CalendarView has no paging in EWS: one answer holds the whole window (up to the
    server's EWSFindCountLimit), so every answer is the last page.
    """

    truncated = False
    # A message of ResponseClass="Warning" did its work: keep the items it carries.
    WARNINGS_TO_IGNORE_IN_RESPONSE = ResponseMessageError

    def _elem_to_obj(self, elem: Any) -> FoundItem | None:
        # Read by mapping.found_item, not by exchangelib's CalendarItem.from_xml: the
        # raw instants, the zones as ids (exchangelib fails the whole answer on
        # "tzone://Microsoft/Custom"), and a tenth of exchangelib's cost.
        return found_item(elem)

    def get_payload(
        self,
        folders: Any,
        additional_fields: Any,
        restriction: Any,
        order_fields: Any,
        query_string: Any,
        shape: Any,
        depth: Any,
        calendar_view: Any,
        page_size: Any,
        offset: int = 0,
    ) -> Any:
        """exchangelib's FindItem payload, made once per kind of request and then copied.

        The payload of a room's calendar view differs from the next room's in the
        mailbox and the window only; exchangelib builds it anew, through its field and
        property classes, for every request, which cost a sixth of a room's read. The
        first request of each kind (folder, version, fields) is exchangelib's own; the
        next ones are a copy of it with their room and window written in.
        """
        arguments = (restriction, order_fields, query_string, shape, depth)
        key = _payload_key(self.account.version, folders, additional_fields, calendar_view)
        if key is None or any(arguments[:3]):
            return super().get_payload(
                folders, additional_fields, *arguments, calendar_view, page_size, offset
            )
        key += (shape, depth)
        with _payloads_lock:
            template = _payloads.get(key)
        if template is None:
            template = super().get_payload(
                folders, additional_fields, *arguments, calendar_view, page_size, offset
            )
            with _payloads_lock:
                _payloads[key] = template
        payload = copy.deepcopy(template)
        view = payload.find(f"{{{MNS}}}CalendarView")
        for name, instant in (("StartDate", calendar_view.start), ("EndDate", calendar_view.end)):
            if not isinstance(instant, EWSDateTime):
                instant = EWSDateTime.from_datetime(instant)
            view.set(name, value_to_xml_text(instant))
        mailbox = next(iter(folders)).mailbox
        if mailbox is not None:
            payload.find(_ADDRESS_PATH).text = mailbox.email_address
        return payload

    def _get_paging_values(self, elem: Any) -> tuple[int, None]:  # type: ignore[override]
        if (elem.get("IncludesLastItemInRange") or "true").lower() == "false":
            self.truncated = True
        return int(elem.get("TotalItemsInView") or 0), None


# FindItem payloads made by CalendarViewItems.get_payload, by kind of request (_payload_key).
_payloads: dict[tuple[Any, ...], Any] = {}
_payloads_lock = threading.Lock()
_ADDRESS_PATH = "/".join(
    (
        f"{{{MNS}}}ParentFolderIds",
        f"{{{TNS}}}DistinguishedFolderId",
        f"{{{TNS}}}Mailbox",
        f"{{{TNS}}}EmailAddress",
    )
)


def _payload_key(
    version: Version, folders: Any, fields: Any, view: CalendarView | None
) -> tuple[Any, ...] | None:
    """What a calendar view's payload depends on but its room and window; None: not one."""
    folders = list(folders)  # exchangelib passes the keys of a dict
    if view is None or len(folders) != 1 or not isinstance(folders[0], DistinguishedFolderId):
        return None
    folder = folders[0]
    mailbox = folder.mailbox
    if mailbox is not None and (mailbox.name or mailbox.item_id or not mailbox.email_address):
        return None  # only a room named by its address has its payload copied
    return (
        type(folder).__name__,
        folder.id,
        folder.changekey,
        None if mailbox is None else (mailbox.routing_type, mailbox.mailbox_type),
        view.max_items,
        version.api_version,
        str(version.build),
        *(field.path for field in fields or ()),
    )


class ItemsWithBodies(SchemaOfTheServer, GetItem):
    """GetItem in the schema of the server (see SchemaOfTheServer)."""


# What FindItem asks for: what mapping.record reads.
FIND_FIELDS = (
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
# exchangelib's private fields whose elements CalendarViewItems reads itself.
ZONE_FIELDS = ("_start_timezone", "_end_timezone")


def field(name: str) -> FieldPath:
    return FieldPath(field=CalendarItem.get_field_by_fieldname(name))


def find_fields(version: Version) -> list[FieldPath]:
    # All-day events come as UTC instants of the mailbox zone's midnights: its zone
    # turns them back into dates.
    with_zones = version.build is None or version.build >= EXCHANGE_2010
    return list(_find_fields(with_zones))


@functools.cache
def _find_fields(with_zones: bool) -> tuple[FieldPath, ...]:
    return tuple(field(name) for name in FIND_FIELDS + (ZONE_FIELDS if with_zones else ()))


def find_item_arguments(folder: Any, view: CalendarView, fields: list[FieldPath]) -> dict[str, Any]:
    """FindItem.call's arguments for one calendar view, the item ids and ``fields`` only."""
    return {
        "folders": [folder],
        "additional_fields": fields,
        "restriction": None,
        "order_fields": None,
        "shape": ID_ONLY,
        "query_string": None,
        "depth": SHALLOW,
        "calendar_view": view,
        "max_items": None,
        "offset": 0,
    }


def calendar_view(
    account: Account, folder: Any, start: dt.datetime, end: dt.datetime
) -> tuple[list[FoundItem], bool]:
    """The items of one CalendarView; and whether Exchange cut it short."""
    service = CalendarViewItems(
        account=account, timeout=budget.timeout(settings.EXCHANGE_REQUEST_TIMEOUT)
    )
    view = CalendarView(
        start=EWSDateTime.from_datetime(start.astimezone(dt.UTC)),
        end=EWSDateTime.from_datetime(end.astimezone(dt.UTC)),
    )
    results = list(service.call(**find_item_arguments(folder, view, find_fields(account.version))))
    failure = next((r for r in results if isinstance(r, Exception)), None)
    if failure is not None:
        raise failure
    return [item for item in results if item is not None], service.truncated


def get_item_arguments(ids: list[tuple[str, str]], body_field: str) -> dict[str, Any]:
    """GetItem.call's arguments for the body (in ``body_field``) and organizer of items."""
    return {
        "items": ids,
        "additional_fields": {field(body_field), field("organizer")},
        "shape": ID_ONLY,
    }


def items_with_bodies(
    account: Account, ids: list[tuple[str, str]], body_field: str
) -> Iterable[Any]:
    """Each item (or the exception of an item gone since), in the order of ``ids``."""
    service = ItemsWithBodies(
        account=account,
        chunk_size=GET_ITEM_CHUNK,
        timeout=budget.timeout(settings.EXCHANGE_REQUEST_TIMEOUT),
    )
    return service.call(**get_item_arguments(ids, body_field))


# -- TLS: the CAs of EXCHANGE_CA_BUNDLE, never REQUESTS_CA_BUNDLE (connector/core/tls.py) --


class ExchangeAdapter(TrustedAdapter):
    """The trusted CAs, and a place among the account's requests in flight (slots.py).

    Each request to Exchange takes its read's place as it goes out: the place covers
    the request on the wire, not the work of making it; SchemaOfTheServer gives it
    back once the answer is read in full.
    """

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        slots.take()
        return super().send(request, *args, **kwargs)


# exchangelib mounts an adapter of this class on every session it makes (BaseProtocol.get_adapter).
BaseProtocol.HTTP_ADAPTER_CLS = ExchangeAdapter


# -- reading instants -------------------------------------------------------------------

_exchangelib_from_string = EWSDateTime.from_string.__func__  # type: ignore[attr-defined]


def _instant_from_string(cls: type[EWSDateTime], date_string: str) -> EWSDateTime:
    """``EWSDateTime.from_string`` without ``strptime`` for Exchange's UTC instants.

    Every start and end of every item comes as ``2026-12-03T09:00:00Z``, which
    exchangelib reads with ``datetime.strptime``: that takes a process-wide lock and
    reads the locale on every call, so rooms read at once queued there one after
    another (most of a refresh round's time, by profile). ``fromisoformat`` reads the
    same text to the same value; anything else goes to exchangelib's own reading.
    """
    if len(date_string) == 20 and date_string[10] == "T" and date_string.endswith("Z"):
        try:
            value = dt.datetime.fromisoformat(date_string[:-1])
        except ValueError:
            pass
        else:
            return cls(
                value.year,
                value.month,
                value.day,
                value.hour,
                value.minute,
                value.second,
                tzinfo=EWS_UTC,
            )
    return _exchangelib_from_string(cls, date_string)  # type: ignore[no-any-return]


EWSDateTime.from_string = classmethod(_instant_from_string)  # type: ignore[assignment,method-assign]


# -- connections and tokens --------------------------------------------------------------


def open_protocol(config: Configuration) -> Protocol:
    """A new Protocol (session pool) for exactly this configuration."""
    # exchangelib caches Protocols by endpoint and credentials only: drop any it holds
    # for an older configuration of this server (another scheme, version, timeout).
    try:
        del Protocol[config]
    except KeyError:
        pass
    kind = KerberosProtocol if config.auth_type == GSSAPI else EwsProtocol
    protocol = kind(config=config)
    protocol.TIMEOUT = settings.EXCHANGE_REQUEST_TIMEOUT
    protocol.RETRY_WAIT = RETRY_WAIT
    return protocol


class EwsProtocol(Protocol):
    """Sessions that read the proxy variables once, when they are made.

    requests walks the whole process environment on every request of a session that
    trusts it, to find HTTPS_PROXY and NO_PROXY again: a tenth of the CPU of a room's
    read. The proxies for this endpoint are read when the session is made (the
    environment of a running process does not change) and the session trusts the
    environment for nothing else: its CA bundle variables never counted
    (connector/core/tls.py) and its credentials are always given. Overrides
    ``raw_session``.
    """

    @classmethod
    def raw_session(
        cls,
        prefix: str,
        oauth2_client: Any = None,
        oauth2_session_params: Any = None,
        oauth2_token_endpoint: Any = None,
    ) -> requests.Session:
        session = super().raw_session(
            prefix,
            oauth2_client=oauth2_client,
            oauth2_session_params=oauth2_session_params,
            oauth2_token_endpoint=oauth2_token_endpoint,
        )
        session.proxies.update(requests.utils.get_environ_proxies(prefix))
        session.trust_env = False
        return session  # type: ignore[no-any-return]


class KerberosProtocol(EwsProtocol):
    """gssnegotiate: every session authenticates with the service account's own ticket.

    exchangelib's GSSAPI sessions rely on a ticket obtained outside the process
    (``kinit``, a keytab) and ignore the configured password; this one asks the
    KDC itself (connector/sources/ews/kerberos.py). Overrides ``create_session``.
    """

    def create_session(self) -> Any:
        host = urlsplit(self.service_endpoint).hostname or self.service_endpoint
        if not kerberos.available():
            raise kerberos.not_installed(host)
        session = super().create_session()
        with _tickets_lock:
            tickets = getattr(self, "_kerberos_tickets", None)
            if tickets is None:
                tickets = kerberos.Tickets(self.credentials.username, self.credentials.password)
                self._kerberos_tickets = tickets
        session.auth = kerberos.KerberosAuth(tickets)
        return session


# One ticket per protocol (endpoint and account), shared by its sessions.
_tickets_lock = threading.Lock()


# -- the OAuth token: msal's, whatever exchangelib does ------------------------------------

# Given the token Exchange refused or exchangelib found expired ("" for none): msal's
# token now, and when it expires (seconds since the epoch). Raises SourceError.
TokenProvider = Callable[[str], tuple[str, float]]


def bearer(token: str, expires_at: float) -> dict[str, Any]:
    """A token as exchangelib and oauthlib keep one."""
    return {
        "access_token": token,
        "token_type": "Bearer",
        "expires_at": expires_at,
        "expires_in": max(0, int(expires_at - time.time())),
    }


class MsalCredentials(OAuth2Credentials):
    """OAuth2Credentials whose token only ever comes from msal (``provider``), not exchangelib.

    exchangelib forgets the token on closing any session (after a connection reset, an
    HTTP error, a refused token) and, holding none, fetches one itself from its
    hard-wired login.microsoftonline.com with the client secret; it also asks the
    credentials to ``refresh`` when a session's token has expired. Here the token
    exchangelib finds missing comes from the provider (msal's cache), and a refresh
    discards the old token from msal before asking for the next; with an empty client
    secret exchangelib never renews a token on its own (``session_params``), and with a
    token always at hand it never fetches one (``create_oauth2_session``).

    Every session of a Protocol adds the token of one oauthlib client, the credentials'
    ``client``: a token set here is set there too, so sessions made with an older token
    send the new one from their next request on.
    """

    def __init__(
        self,
        client_id: str,
        tenant_id: str,
        provider: TokenProvider,
        identity: Identity | None = None,
    ) -> None:
        super().__init__(
            client_id=client_id, client_secret="", tenant_id=tenant_id, identity=identity
        )
        self.provider = provider
        # exchangelib caches the client in the instance's dict, which sig(), __eq__ and
        # __hash__ walk: made now, not in the middle of one of them.
        _ = self.client

    @property
    def access_token(self) -> dict[str, Any] | None:
        if self._access_token is None:
            # exchangelib dropped its copy: msal's token again (its cache serves it).
            with self.lock:
                if self._access_token is None:
                    self.access_token = self._from_msal()
        token: dict[str, Any] | None = self._access_token
        return token

    @access_token.setter
    def access_token(self, token: dict[str, Any] | None) -> None:
        OAuth2Credentials.access_token.fset(self, token)  # exchangelib's type check
        if token is not None:
            client = self.client
            client.token = token
            client.populate_token_attributes(token)

    def _from_msal(self) -> dict[str, Any]:
        """msal's token; else, when msal fails, the last one while it is valid.

        exchangelib asks for a token while replacing a session that failed: an error
        raised there loses that session for good (its Protocol then waits for a free
        one forever once all are lost). The last token is still good for that session;
        msal's error is raised by the next fetch, which asks msal first (EwsSource).
        """
        try:
            return bearer(*self.provider(""))
        except SourceError as exc:
            last = self.client.token or {}
            if last.get("access_token") and float(last.get("expires_at", 0)) > time.time():
                log.warning("msal gave no token (%s): the last one is kept meanwhile", exc)
                return dict(last)
            raise

    def refresh(self, session: Any) -> None:
        """A session found its token expired: msal forgets it and gives the next one."""
        with self.lock:
            old = self._access_token
            self.access_token = bearer(*self.provider(old["access_token"] if old else ""))

    def hold(self, token: str, expires_at: float) -> None:
        """msal's token for the fetch starting: every session sends it from now on."""
        with self.lock:
            current = self._access_token
            if current is None or current.get("access_token") != token:
                self.access_token = bearer(token, expires_at)


# -- the version probe ---------------------------------------------------------------------


def guess_older_version(protocol: Protocol) -> Version:
    """The probe again, from each older RequestServerVersion down.

    exchangelib walks down the versions when Exchange answers ErrorInvalidServerVersion;
    a server that fails a version it does not know in schema validation instead (or in
    a plain HTTP 500 page) would stop the walk at the first (newest) one.
    """
    for api_version in ConvertId.supported_api_versions()[1:]:
        try:
            return Version.guess(protocol, api_version_hint=api_version)
        except TransportError as exc:
            if not refused_for_its_version(exc):
                raise
    raise ErrorSchemaValidation("The server refused every RequestServerVersion in the probe")


def no_version_told(exc: TransportError) -> bool:
    """The probe's answers named no version, and refused nothing but the probe itself.

    Any other refusal (impersonation denied, a bad account) is the news, not the version.
    """
    if not str(exc).startswith("No valid version headers"):
        return False
    cause = exc.__cause__ or exc.__context__
    return cause is None or isinstance(cause, ErrorInvalidServerVersion)


def refused_for_its_version(exc: BaseException) -> bool:
    """A refusal exchangelib does not walk down on (schema validation, a plain HTTP 500).

    Its probe wraps the server's refusal in a TransportError.
    """
    link: BaseException | None = exc
    while link is not None:
        if isinstance(link, ErrorSchemaValidation | ErrorInvalidSchemaVersionForMailboxVersion):
            return True
        link = link.__cause__ or link.__context__
    return False
