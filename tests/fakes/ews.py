"""A fake Exchange server speaking EWS (SOAP 1.1) on 127.0.0.1, for unmodified exchangelib.

What it does, as Exchange 2007 SP1–2019 (and Exchange Online) do, presenting the
``build`` it is given (``EXCHANGE_2007_SP1`` ... ``EXCHANGE_ONLINE``) and speaking that
build's schema: a newer RequestServerVersion is an ``ErrorInvalidServerVersion`` fault,
a property the requested schema lacks an ``ErrorSchemaValidation`` fault.

- ``POST /EWS/Exchange.asmx``: ConvertId (exchangelib's version probe; the
  answer's SOAP header carries ServerVersionInfo), GetFolder of distinguished
  folders (localized display names), FindItem with a CalendarView (the
  occurrences overlapping the window), GetItem (bodies, full organizer).
- Authentication: Basic, Digest, NTLM (also inside Negotiate) with a real
  handshake per TCP connection, Bearer tokens checked by ``token_validator``.
  An app-only token reads a room by impersonation (the ``ExchangeImpersonation``
  SOAP header); a delegated token (``token_owner`` names its account) reads as
  that account, the rooms it has rights on, and its impersonation header is
  refused with ``ErrorImpersonateUserDenied``, as Exchange Online does.
- Rights: a user reads its own mailbox and those it was granted
  (``ErrorAccessDenied`` otherwise); unknown mailboxes give
  ``ErrorNonExistentMailbox``; impersonation without the role or consent gives
  ``ErrorImpersonateUserDenied``.
- Faults on demand: ``ErrorServerBusy`` with ``BackOffMilliseconds``
  (``inject_busy``), EWS blocked for apps as Exchange Online does it (403),
  the endpoint gone (404), plus the base faults (latency, HTTP errors, down, an
  untrusted certificate).
  ``FAULTS`` names every fault a test can bring about and its switch:
  tests/test_console_faults.py requires a console case for each.
- Autodiscover v2 JSON on the same host.
- A log of SOAP operations: ``count_op("FindItem", mailbox=...)``.
"""

from __future__ import annotations

import base64
import datetime as dt
import threading
import time
from dataclasses import dataclass, replace

from tests.fakes import ews_soap as soap
from tests.fakes.autodiscover import autodiscover_answer, is_autodiscover
from tests.fakes.base import FakeHTTPServer, Request, Response
from tests.fakes.ews_auth import Authenticator, FakeUser, Outcome
from tests.fakes.rooms import FakeEvent, build_rooms, overlapping

EWS_PATH = "/ews/exchange.asmx"
SOAP_CONTENT_TYPE = "text/xml; charset=utf-8"
# Builds as their ServerVersionInfo reports them (learn.microsoft.com, Exchange build numbers).
EXCHANGE_2007_SP1 = (8, 1, 240, 6)
EXCHANGE_2010 = (14, 0, 639, 21)
EXCHANGE_2010_SP2 = (14, 2, 247, 5)
EXCHANGE_2019 = (15, 2, 1544, 4)
EXCHANGE_2016 = (15, 1, 2507, 6)
EXCHANGE_2013 = (15, 0, 1497, 2)
EXCHANGE_ONLINE = (15, 20, 8200, 25)

TEXT_ACCESS_DENIED = "Access is denied. Check credentials and try again."
TEXT_NO_MAILBOX = "The SMTP address has no mailbox associated with it."
TEXT_IMPERSONATE_DENIED = "The account does not have permission to impersonate the requested user."
TEXT_BUSY = "The server cannot service this request right now. Try again later."
# Exchange Online, for an app the tenant has not allow-listed for EWS (EWSEnabled /
# EWSAllowedAppIDs), answers 403 before any SOAP processing.
TEXT_EWS_BLOCKED = (
    "403 Forbidden: Exchange Web Services access is blocked for this application by the "
    "organization's EWS settings (EWSEnabled / EWSAllowedAppIDs)."
)


@dataclass(frozen=True)
class Fault:
    """A way this fake fails its client, and the switch a test uses to bring it about."""

    answer: str  # what the client gets
    switch: str = ""  # the FakeExchange member set or called; "" when the request asks for it


# Every fault of this fake, by name. tests/test_console_faults.py runs the test console
# against each (its cases carry these names) and checks that every switch of the fake
# (an inject_* method, a field of Faults) is named here: a fault added to the fake
# without an entry, or an entry without a console case, fails there.
FAULTS: dict[str, Fault] = {
    "wrong password": Fault("HTTP 401: credentials of no user of the fake"),
    "access denied": Fault("ErrorAccessDenied: a mailbox the user was not granted", "revoke"),
    "unknown mailbox": Fault("ErrorNonExistentMailbox: a mailbox the fake does not hold"),
    "impersonation denied": Fault(
        "ErrorImpersonateUserDenied: full_access_as_app not consented", "app_impersonation"
    ),
    "busy": Fault("ErrorServerBusy with BackOffMilliseconds", "inject_busy"),
    "soap fault": Fault("any SOAP fault, e.g. ErrorInternalServerError", "inject_fault"),
    "ews blocked": Fault("HTTP 403 to bearer tokens, as Exchange Online", "ews_blocked"),
    "endpoint missing": Fault("HTTP 404: no EWS virtual directory", "ews_missing"),
    "http error": Fault("an HTTP error status instead of the answer", "faults.fail_next"),
    "slow": Fault("answers later than the client waits", "faults.latency"),
    "down": Fault("connections closed without an answer", "faults.down"),
    "untrusted certificate": Fault(
        "TLS with a certificate of a CA the client does not trust",
        "faults.untrusted_certificate",
    ),
}


@dataclass
class OpRecord:
    """One SOAP operation the fake processed (after authentication)."""

    operation: str
    mailboxes: tuple[str, ...]  # mailboxes it addressed ('' = the caller's own)
    caller: str  # the user, or 'app' for a bearer token
    impersonate: str
    connection_id: int
    requested_version: str
    outcome: str  # ok | busy | fault:<code> | error:<code>


class FakeExchange(FakeHTTPServer):
    def __init__(
        self,
        *,
        today: dt.date | None = None,
        build: tuple[int, int, int, int] = EXCHANGE_2019,
        zone: soap.MailboxZone | None = None,
        tls: bool = True,
    ) -> None:
        super().__init__(tls=tls)
        self.build = build
        self.zone = zone or soap.MailboxZone()
        self.auth = Authenticator()
        self.mailboxes: dict[str, list[FakeEvent]] = build_rooms(
            today or dt.date.today(), tz=self.zone.iana
        )
        self.locales: dict[str, str] = {}  # mailbox -> language of its folder names
        self.rights: dict[str, set[str]] = {}  # user -> mailboxes it may read
        self.impersonators: set[str] = set()  # users holding the ApplicationImpersonation role
        self.app_impersonation = True  # the OAuth app's full_access_as_app is consented
        self.ews_blocked = False  # Exchange Online refuses EWS to this (non allow-listed) app
        self.ews_missing = False  # the EWS virtual directory is gone (404)
        self.organizer_smtp_in_find_item = True  # False: X500 addresses, as Exchange Online
        # How a too-new RequestServerVersion is refused: Exchange documents
        # ErrorInvalidServerVersion; some builds fail it in schema validation instead,
        # or answer a plain HTTP 500 page ("html").
        self.too_new_version_fault = "ErrorInvalidServerVersion"
        # EWSFindCountLimit of the throttling policy (1000 by default on premises): a view
        # holding more answers only the first ones ("truncate") or fails ("error").
        self.find_count_limit: int | None = None
        self.find_count_mode = "truncate"
        self.find_item_warning = ""  # a ResponseCode answered as ResponseClass="Warning"
        self.omitted: set[str] = set()  # FieldURIs left out of every item, asked or not
        self.time_format = "%Y-%m-%dT%H:%M:%SZ"  # how instants are written (strftime)
        self.serves_convert_id = True  # False: exchangelib's version probe finds nothing
        # The envelope's prefix and XML declaration: Exchange writes "s" with one; other
        # SOAP stacks write "soap" and may leave the declaration out.
        self.soap_prefix = "s"
        self.xml_declaration = True
        self.autodiscover_url = ""  # what autodiscover answers; default: this server
        self.ops: list[OpRecord] = []
        self.work_time = 0.0  # seconds each SOAP answer takes, counted as in flight
        self.in_flight = 0  # SOAP requests being answered right now
        self.max_in_flight = 0  # the most answered at once
        self._busy: list[int] = []
        self._faults: list[tuple[str, str]] = []
        self._folder_generation = 1
        self._lock = threading.RLock()

    # -- configuration --------------------------------------------------------------
    @property
    def ews_url(self) -> str:
        return f"{self.url}/EWS/Exchange.asmx"

    @property
    def token_validator(self) -> object:
        return self.auth.token_validator

    @token_validator.setter
    def token_validator(self, validator: object) -> None:
        self.auth.token_validator = validator

    @property
    def token_owner(self) -> object:
        return self.auth.token_owner

    @token_owner.setter
    def token_owner(self, owner: object) -> None:
        self.auth.token_owner = owner

    def add_user(
        self,
        username: str,
        password: str,
        scheme: str = "ntlm",
        *,
        mailbox: str | None = None,
        rooms: tuple[str, ...] | list[str] = (),
    ) -> FakeUser:
        """A user (its own mailbox is its address unless given) with rights on ``rooms``."""
        own = (mailbox if mailbox is not None else username if "@" in username else "").lower()
        user = FakeUser(username=username, password=password, scheme=scheme, mailbox=own)
        self.auth.add_user(user)
        with self._lock:
            if own:
                self.mailboxes.setdefault(own, [])
            self.rights.setdefault(user.key, set())
        self.grant(username, *rooms)
        return user

    def grant(self, username: str, *mailboxes: str) -> None:
        """Full access (or Reviewer on the calendar) for ``username`` on the mailboxes."""
        with self._lock:
            self.rights.setdefault(username.lower(), set()).update(m.lower() for m in mailboxes)

    def revoke(self, username: str, *mailboxes: str) -> None:
        with self._lock:
            self.rights.setdefault(username.lower(), set()).difference_update(
                m.lower() for m in mailboxes
            )

    def add_mailbox(
        self, mailbox: str, events: list[FakeEvent] | None = None, *, locale: str = "en"
    ) -> None:
        with self._lock:
            self.mailboxes[mailbox.lower()] = list(events or [])
            self.locales[mailbox.lower()] = locale

    def set_events(self, mailbox: str, events: list[FakeEvent]) -> None:
        with self._lock:
            self.mailboxes[mailbox.lower()] = list(events)

    def add_event(self, mailbox: str, event: FakeEvent) -> None:
        with self._lock:
            self.mailboxes.setdefault(mailbox.lower(), []).append(event)

    def events(self, mailbox: str) -> list[FakeEvent]:
        with self._lock:
            return list(self.mailboxes.get(mailbox.lower(), []))

    def set_locale(self, mailbox: str, locale: str) -> None:
        with self._lock:
            self.locales[mailbox.lower()] = locale

    def inject_busy(self, count: int = 1, back_off_ms: int = 50) -> None:
        """The next ``count`` SOAP requests get ErrorServerBusy with BackOffMilliseconds."""
        with self._lock:
            self._busy.extend([back_off_ms] * count)

    def inject_fault(self, code: str, text: str, count: int = 1) -> None:
        """The next ``count`` SOAP requests fail with this SOAP fault (HTTP 500)."""
        with self._lock:
            self._faults.extend([(code, text)] * count)

    def clear_injected(self) -> None:
        """Forget the ErrorServerBusy answers and SOAP faults still waiting to be sent."""
        with self._lock:
            self._busy.clear()
            self._faults.clear()

    def invalidate_folder_ids(self) -> None:
        """Folder ids handed out so far stop working (a mailbox moved or was restored)."""
        with self._lock:
            self._folder_generation += 1

    def forget_connections(self) -> None:
        """NTLM-authenticated connections must authenticate again."""
        self.auth.forget_connections()

    # -- the log ---------------------------------------------------------------------
    def count_op(self, operation: str, *, mailbox: str | None = None) -> int:
        with self._lock:
            return sum(
                1
                for op in self.ops
                if op.operation == operation
                and (mailbox is None or mailbox.lower() in op.mailboxes)
            )

    def clear_log(self) -> None:
        super().clear_log()
        with self._lock:
            self.ops.clear()

    def soap_requests(self) -> list[Request]:
        return [r for r in self.requests if r.method == "POST" and r.path.lower() == EWS_PATH]

    # -- HTTP ------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        if is_autodiscover(request):
            return autodiscover_answer(request, self.autodiscover_url or self.ews_url)
        if request.path.lower() != EWS_PATH or self.ews_missing:
            return Response(
                status=404,
                body="<html><body><h2>404 - File or directory not found.</h2></body></html>",
                content_type="text/html",
            )
        if request.method != "POST":
            return Response(status=405, body="Method Not Allowed")
        outcome = self.auth.authenticate(
            request.method, request.header("Authorization"), request.connection_id
        )
        if not outcome.ok:
            return Response(
                status=401,
                body="401 - Unauthorized: Access is denied due to invalid credentials.",
                headers=outcome.challenge,
                content_type="text/html",
            )
        if outcome.bearer and self.ews_blocked:
            return Response(status=403, body=TEXT_EWS_BLOCKED, content_type="text/html")
        try:
            soap_request = soap.parse_request(request.body)
        except (ValueError, SyntaxError) as exc:
            return self._fault(
                "ErrorSchemaValidation", f"The request failed schema validation: {exc}"
            )
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.work_time:
                time.sleep(self.work_time)
            return self._soap(soap_request, outcome, request.connection_id)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _fault(self, code: str, text: str, *, back_off_ms: int | None = None) -> Response:
        return Response(
            status=500,
            body=self._styled(soap.fault(code, text, back_off_ms=back_off_ms)),
            content_type=SOAP_CONTENT_TYPE,
        )

    def _ok(self, operation: str, messages: list[str]) -> Response:
        return Response(
            body=self._styled(soap.response(operation, messages, self.build)),
            content_type=SOAP_CONTENT_TYPE,
        )

    def _styled(self, envelope: str) -> str:
        if not self.xml_declaration:
            envelope = envelope.removeprefix('<?xml version="1.0" encoding="utf-8"?>')
        if self.soap_prefix != "s":
            p = self.soap_prefix
            envelope = (
                envelope.replace("<s:", f"<{p}:")
                .replace("</s:", f"</{p}:")
                .replace("xmlns:s=", f"xmlns:{p}=")
            )
        return envelope

    def _record(
        self, req: soap.SoapRequest, outcome: Outcome, connection_id: int, result: str
    ) -> None:
        mailboxes = tuple(self._folder_mailbox(f, outcome, req)[0] for f in req.folders)
        if req.operation == "GetItem":
            mailboxes = tuple(self._item_mailbox(item_id) for item_id in req.item_ids)
        with self._lock:
            self.ops.append(
                OpRecord(
                    operation=req.operation,
                    mailboxes=mailboxes,
                    caller=(
                        outcome.delegate
                        or ("app" if outcome.bearer else "")
                        or (outcome.user.key if outcome.user else "")
                    ),
                    impersonate=req.impersonate,
                    connection_id=connection_id,
                    requested_version=req.requested_version,
                    outcome=result,
                )
            )

    def _soap(self, req: soap.SoapRequest, outcome: Outcome, connection_id: int) -> Response:
        with self._lock:
            busy = self._busy.pop(0) if self._busy else None
        if busy is not None:
            self._record(req, outcome, connection_id, "busy")
            return self._fault("ErrorServerBusy", TEXT_BUSY, back_off_ms=busy)
        with self._lock:
            injected = self._faults.pop(0) if self._faults else None
        if injected is not None:
            self._record(req, outcome, connection_id, f"fault:{injected[0]}")
            return self._fault(*injected)
        versions = soap.API_VERSIONS
        requested = req.requested_version or "Exchange2007"  # no header: the oldest schema
        # A version newer than the server's (or none it knows) fails before any work, as a
        # SOAP fault without ServerVersionInfo; exchangelib then tries older versions.
        if requested not in versions or versions.index(requested) > versions.index(
            soap.max_api_version(self.build)
        ):
            code = self.too_new_version_fault
            self._record(req, outcome, connection_id, f"fault:{code}")
            if code == "html":  # an HTTP 500 page rather than a SOAP fault
                return Response(
                    status=500,
                    body="<html><body>The specified server version is invalid.</body></html>",
                    content_type="text/html",
                )
            if code == "ErrorSchemaValidation":
                return self._fault(
                    code,
                    "The request failed schema validation: The 'Version' attribute is invalid - "
                    f"The value '{requested}' is invalid according to its datatype "
                    f"'{soap.T}:ExchangeVersionType' - The Enumeration constraint failed.",
                )
            return self._fault(code, "The specified server version is invalid.")
        if req.impersonate and outcome.delegate:
            # A delegated token (EWS.AccessAsUser.All) never impersonates in Exchange Online:
            # the ApplicationImpersonation role that allowed it is retired (Microsoft 365
            # message MC718754), and "Authenticate an EWS application by using OAuth"
            # (learn.microsoft.com/exchange/client-developer/exchange-web-services/
            # how-to-authenticate-an-ews-application-by-using-oauth) reserves impersonation
            # to app-only tokens (full_access_as_app). A delegate reads another mailbox by
            # naming it in the folder id, with rights of its own on it.
            self._record(req, outcome, connection_id, "fault:ErrorImpersonateUserDenied")
            return self._fault("ErrorImpersonateUserDenied", TEXT_IMPERSONATE_DENIED)
        if req.impersonate:
            allowed = (
                self.app_impersonation
                if outcome.bearer
                else bool(outcome.user and outcome.user.key in self.impersonators)
            )
            if not allowed:
                self._record(req, outcome, connection_id, "fault:ErrorImpersonateUserDenied")
                return self._fault("ErrorImpersonateUserDenied", TEXT_IMPERSONATE_DENIED)
            with self._lock:
                known = req.impersonate in self.mailboxes
            if not known:
                self._record(req, outcome, connection_id, "fault:ErrorNonExistentMailbox")
                return self._fault("ErrorNonExistentMailbox", TEXT_NO_MAILBOX)
        unknown = soap.unknown_fields(req.additional, requested)
        if req.time_zone_context and versions.index(requested) < versions.index("Exchange2010"):
            unknown = ["TimeZoneContext"]
        if unknown:
            self._record(req, outcome, connection_id, "fault:ErrorSchemaValidation")
            return self._fault(
                "ErrorSchemaValidation",
                "The request failed schema validation: The 'FieldURI' attribute is invalid - "
                f"The value '{unknown[0]}' is invalid according to its datatype "
                f"'{soap.T}:UnindexedFieldURIType' - The Enumeration constraint failed.",
            )
        if req.operation == "ConvertId" and not self.serves_convert_id:
            self._record(req, outcome, connection_id, "fault:ErrorInvalidRequest")
            return self._fault("ErrorInvalidRequest", "The request is invalid.")
        handler = {
            "ConvertId": self._convert_id,
            "GetFolder": self._get_folder,
            "FindItem": self._find_item,
            "GetItem": self._get_item,
        }.get(req.operation)
        if handler is None:
            self._record(req, outcome, connection_id, "fault:ErrorInvalidRequest")
            return self._fault("ErrorInvalidRequest", f"The fake does not serve {req.operation}.")
        messages, result = handler(req, outcome)
        self._record(req, outcome, connection_id, result)
        return self._ok(req.operation, messages)

    # -- who may read what ------------------------------------------------------------
    def _acting_mailbox(self, req: soap.SoapRequest, outcome: Outcome) -> str:
        if req.impersonate:
            return req.impersonate
        if outcome.delegate:
            return outcome.delegate
        return outcome.user.mailbox if outcome.user else ""

    def _folder_id(self, mailbox: str, name: str) -> str:
        raw = f"{self._folder_generation}:{mailbox}:{name}".encode()
        return "AAMkAD" + base64.urlsafe_b64encode(raw).decode()

    def _folder_mailbox(
        self, ref: soap.FolderRef, outcome: Outcome, req: soap.SoapRequest
    ) -> tuple[str, str]:
        """(mailbox, distinguished name) of a folder reference; mailbox '' when unknown."""
        if ref.folder_id:
            try:
                raw = base64.urlsafe_b64decode(ref.folder_id[len("AAMkAD") :]).decode()
                generation, mailbox, name = raw.split(":", 2)
            except ValueError:
                return "", ""
            if int(generation) != self._folder_generation:
                return "", ""
            return mailbox, name
        return ref.mailbox or self._acting_mailbox(req, outcome), ref.distinguished

    def _check(self, mailbox: str, req: soap.SoapRequest, outcome: Outcome) -> str | None:
        """The error code when the caller may not read ``mailbox``."""
        with self._lock:
            if mailbox not in self.mailboxes:
                return "ErrorNonExistentMailbox"
            if req.impersonate:
                return None if mailbox == req.impersonate else "ErrorAccessDenied"
            if outcome.delegate:
                # A delegated token reads as its account: its own mailbox, and those it has
                # rights on (folder permission or full access).
                if mailbox == outcome.delegate or mailbox in self.rights.get(outcome.delegate, ()):
                    return None
                return "ErrorAccessDenied"
            if outcome.bearer:
                return "ErrorAccessDenied"  # app-only access works only by impersonation
            assert outcome.user is not None
            if mailbox == outcome.user.mailbox or mailbox in self.rights.get(outcome.user.key, ()):
                return None
            return "ErrorAccessDenied"

    @staticmethod
    def _error_text(code: str) -> str:
        return {
            "ErrorNonExistentMailbox": TEXT_NO_MAILBOX,
            "ErrorAccessDenied": TEXT_ACCESS_DENIED,
            "ErrorFolderNotFound": "The specified folder could not be found in the store.",
            "ErrorItemNotFound": "The specified object was not found in the store.",
        }.get(code, code)

    # -- operations ------------------------------------------------------------------
    def _convert_id(self, req: soap.SoapRequest, outcome: Outcome) -> tuple[list[str], str]:
        assert req.body is not None
        count = max(1, len(req.body.findall(f"{{{soap.M}}}SourceIds/*")))
        message = soap.error_message(
            "ConvertId", "ErrorInvalidSmtpAddress", "The SMTP address format is invalid."
        )
        return [message] * count, "ok"

    def _get_folder(self, req: soap.SoapRequest, outcome: Outcome) -> tuple[list[str], str]:
        messages: list[str] = []
        result = "ok"
        for ref in req.folders:
            mailbox, name = self._folder_mailbox(ref, outcome, req)
            code = "ErrorFolderNotFound" if not name else self._check(mailbox, req, outcome)
            if code:
                messages.append(soap.error_message("GetFolder", code, self._error_text(code)))
                result = f"error:{code}"
                continue
            folder_id = self._folder_id(mailbox, name)
            change_key = f"AgAAABQA{self._folder_generation:04d}"
            if name == "calendar":
                locale = self.locales.get(mailbox, "en")
                display = soap.CALENDAR_NAMES.get(locale, "Calendar")
                with self._lock:
                    total = len(self.mailboxes.get(mailbox, []))
                folder = soap.calendar_folder(folder_id, change_key, display, total)
            else:
                folder = soap.plain_folder(folder_id, change_key, name)
            messages.append(soap.success_message("GetFolder", f"<m:Folders>{folder}</m:Folders>"))
        return messages, result

    def _find_item(self, req: soap.SoapRequest, outcome: Outcome) -> tuple[list[str], str]:
        forbidden = sorted(set(req.additional) & soap.FIND_ITEM_FORBIDDEN)
        if forbidden:
            text = f"The property FieldURI '{forbidden[0]}' can't be used in FindItem requests."
            messages = [soap.error_message("FindItem", "ErrorInvalidPropertyRequest", text)]
            return messages * max(1, len(req.folders)), "error:ErrorInvalidPropertyRequest"
        fields = list(req.additional)
        if req.base_shape != "IdOnly":
            fields += soap.DEFAULT_SHAPE
        messages: list[str] = []
        result = "ok"
        for ref in req.folders:
            mailbox, name = self._folder_mailbox(ref, outcome, req)
            code = "ErrorFolderNotFound" if not name else self._check(mailbox, req, outcome)
            if code:
                messages.append(soap.error_message("FindItem", code, self._error_text(code)))
                result = f"error:{code}"
                continue
            with self._lock:
                events = list(self.mailboxes.get(mailbox, [])) if name == "calendar" else []
            if req.view_start is not None and req.view_end is not None:
                found = overlapping(events, req.view_start, req.view_end)
            else:
                # Without a CalendarView Exchange lists series masters, which the fake does
                # not model: it lists single items only.
                found = [event for event in events if not event.is_recurring]
            total = len(found)
            limit = self.find_count_limit
            if limit is not None and total > limit and self.find_count_mode == "error":
                code = "ErrorExceededFindCountLimit"
                text = "The find operation exceeded the find count limit."
                messages.append(soap.error_message("FindItem", code, text))
                result = f"error:{code}"
                continue
            for cap in (req.max_entries, limit):
                if cap is not None:
                    found = found[:cap]
            organizer_smtp = self.organizer_smtp_in_find_item
            shown = [uri for uri in fields if uri not in self.omitted]
            items = "".join(
                soap.calendar_item(
                    event,
                    shown,
                    self.zone,
                    organizer_smtp=organizer_smtp,
                    time_format=self.time_format,
                )
                for event in found
            )
            last = "true" if len(found) == total else "false"
            content = (
                f'<m:RootFolder TotalItemsInView="{total}" IncludesLastItemInRange="{last}">'
                f"<t:Items>{items}</t:Items></m:RootFolder>"
            )
            if self.find_item_warning:
                messages.append(soap.warning_message("FindItem", self.find_item_warning, content))
            else:
                messages.append(soap.success_message("FindItem", content))
        return messages, result

    def _item_mailbox(self, item_id: str) -> str:
        with self._lock:
            for mailbox, events in self.mailboxes.items():
                if any(event.item_id == item_id for event in events):
                    return mailbox
        return ""

    def _get_item(self, req: soap.SoapRequest, outcome: Outcome) -> tuple[list[str], str]:
        fields = list(req.additional)
        if req.base_shape != "IdOnly":
            fields += soap.DEFAULT_SHAPE + ["item:Body"]
        messages: list[str] = []
        result = "ok"
        for item_id in req.item_ids:
            mailbox = self._item_mailbox(item_id)
            code = self._check(mailbox, req, outcome) if mailbox else "ErrorItemNotFound"
            if code:
                messages.append(soap.error_message("GetItem", code, self._error_text(code)))
                result = f"error:{code}"
                continue
            with self._lock:
                event = next(e for e in self.mailboxes[mailbox] if e.item_id == item_id)
            item = soap.calendar_item(
                replace(event), fields, self.zone, time_format=self.time_format
            )
            messages.append(soap.success_message("GetItem", f"<m:Items>{item}</m:Items>"))
        return messages, result
