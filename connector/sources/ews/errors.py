"""What went wrong talking EWS, as an Exchange administrator reads it.

exchangelib raises its own exceptions (often chained: a ConnectionError inside
an ErrorTimeoutExpired, an ErrorImpersonateUserDenied inside a TransportError).
``source_error`` walks the chain and turns the first one it recognises into a
SourceError whose hint names the fix, as the admin would apply it. No message
carries a password, a client secret or a token.

The exchangelib exceptions it recognises are a table (``EWS_ERRORS``), read top
down: a new failure is one more row, and its texts can be read (and reviewed by
an Exchange administrator) without following code. An HTTP answer that is not
SOAP (``EwsHttpError``, raised by the retry policy in protocol.py) is told
apart by its status in ``_http``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from exchangelib import errors as ews

from connector.core.errors import SourceError
from connector.core.network import network_error

log = logging.getLogger(__name__)

EWS_RETIREMENT = (
    "EWS in Exchange Online is blocked since 1 October 2026 for applications the tenant has "
    "not allow-listed, and ends for good on 1 April 2027: switch this server to Microsoft "
    "Graph (type graph, application permission Calendars.Read) in the admin."
)


class EwsHttpError(Exception):
    """Exchange (or IIS in front of it) answered an HTTP error instead of SOAP."""

    def __init__(self, status: int, *, authenticate: str = "", diagnostics: str = "") -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.authenticate = authenticate  # WWW-Authenticate of a 401
        self.diagnostics = diagnostics  # x-ms-diagnostics of Exchange Online


@dataclass(frozen=True)
class ErrorContext:
    """What the hints need to name the fix. Never holds a secret."""

    endpoint: str  # the EWS URL
    host: str
    resource: str  # the mailbox read ('' = the account's own)
    account: str  # the delegate's username, or the app's client id
    oauth: bool  # app registration (OAuth) rather than HTTP credentials
    exchange_online: bool
    scheme: str  # ntlm | basic | digest | gssnegotiate | oauth
    delegated: bool = False  # OAuth with the delegated flow: a signed-in account reads
    signed_in: str = ""  # that account


@dataclass(frozen=True)
class Row:
    """One recognised failure and what the admin reads for it.

    ``code``, ``message`` and ``hint`` are ``str.format`` templates over the fields
    of ``_fields``: {host}, {endpoint}, {account}, {signed_in}, {scheme}, {mailbox} (the room, or
    "the account's own mailbox"), {room} (the room, or "<room>" in a command to
    type), {kind} (the exception's class name), {first_line} (of Exchange's message)
    and {cas_error}.
    """

    kinds: tuple[type[BaseException], ...]
    code: str
    message: str
    hint: str
    retryable: bool = False
    step: str = "fetch"  # source.py replaces "fetch" by the step it failed in; "connect" stays
    for_resource: bool = True  # the error names the room it happened on
    # The row holds only when this flag of the ErrorContext is set: the fix differs for
    # a delegated sign-in, an app registration (oauth) and for Exchange Online.
    when: Literal["", "delegated", "oauth", "exchange_online"] = ""
    # Exchange's own word for it, shown beside the message ("" = from the exception:
    # its ResponseCode, or the HTTP status exchangelib read it from).
    upstream: str = ""

    def holds_for(self, ctx: ErrorContext) -> bool:
        return not self.when or bool(getattr(ctx, self.when))

    def matches(self, exc: BaseException, ctx: ErrorContext) -> bool:
        return isinstance(exc, self.kinds) and self.holds_for(ctx)

    def error(self, exc: BaseException, ctx: ErrorContext) -> SourceError:
        fields = _fields(exc, ctx)
        return SourceError(
            self.message.format(**fields),
            code=self.code.format(**fields),
            hint=self.hint.format(**fields),
            retryable=self.retryable,
            step=self.step,
            resource=ctx.resource if self.for_resource else "",
            upstream=self.upstream.format(**fields) if self.upstream else upstream_code(exc),
            back_off=_back_off(exc),
        )


def upstream_code(exc: BaseException) -> str:
    """What Exchange said, as it said it: the ResponseCode, else the HTTP status.

    exchangelib names its exception classes after the ResponseCodes; a few stand for
    an HTTP answer or for its own retry policy giving up on ErrorServerBusy.
    """
    if isinstance(exc, ews.RateLimitError):
        return "ErrorServerBusy"
    if isinstance(exc, ews.UnauthorizedError):
        return "HTTP 401"
    if isinstance(exc, ews.RedirectError):
        return "HTTP 302"
    if isinstance(exc, ews.CASError):
        return f"X-CasErrorCode {exc.cas_error}"
    return type(exc).__name__


def _back_off(exc: BaseException) -> float | None:
    """The seconds Exchange asked to wait (BackOffMilliseconds), when it asked."""
    wait = getattr(exc, "wait", None) if isinstance(exc, ews.RateLimitError) else None
    if isinstance(exc, ews.ErrorServerBusy):
        wait = exc.back_off
    return float(wait) if wait else None


def _fields(exc: BaseException, ctx: ErrorContext) -> dict[str, str]:
    return {
        "host": ctx.host,
        "endpoint": ctx.endpoint,
        "account": ctx.account,
        "signed_in": ctx.signed_in or "the signed-in account",
        "scheme": ctx.scheme,
        "mailbox": _mailbox(ctx),
        "room": ctx.resource or "<room>",
        "kind": type(exc).__name__,
        "first_line": _first_line(str(exc)),
        "cas_error": str(getattr(exc, "cas_error", "")),
    }


def _mailbox(ctx: ErrorContext) -> str:
    return ctx.resource or "the account's own mailbox"


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:300]


# A login refused: exchangelib's UnauthorizedError, or an HTTP 401 (see _http).
UNAUTHORIZED: tuple[Row, ...] = (
    Row(
        (ews.UnauthorizedError,),
        when="delegated",
        code="token-rejected",
        message="Exchange at {host} refused the delegated token of {signed_in} (app {account}).",
        hint="The token was issued but Exchange does not accept it: give the app registration "
        "the delegated permission EWS.AccessAsUser.All (Office 365 Exchange Online) with "
        "consent, check that the app registration's tenant is the tenant of the mailboxes and "
        "that EWS is enabled for {signed_in} (Set-CASMailbox {signed_in} -EwsEnabled $true).",
        step="connect",
        for_resource=False,
    ),
    Row(
        (ews.UnauthorizedError,),
        when="oauth",
        code="token-rejected",
        message="Exchange at {host} refused the OAuth token of app {account}.",
        hint="The token was issued but Exchange does not accept it: give the app registration "
        "the application permission full_access_as_app (Office 365 Exchange Online) and grant "
        "admin consent, and check that the app registration's tenant is the tenant of the "
        "mailboxes.",
        step="connect",
        for_resource=False,
    ),
    Row(
        (ews.UnauthorizedError,),
        when="exchange_online",
        code="basic-auth-disabled",
        message="Exchange Online refused the {scheme} login of {account}.",
        hint="Exchange Online switched off basic (password) authentication for EWS in 2022. "
        "Use an app registration instead: a server of type graph (recommended), or type ews "
        "with OAuth and the full_access_as_app permission until April 2027.",
        step="connect",
        for_resource=False,
    ),
    Row(
        (ews.UnauthorizedError,),
        code="wrong-password",
        message="Exchange at {host} refused the login of {account} ({scheme}).",
        hint="Check the username and password of the service account (the password may have "
        "expired or the account may be locked: Get-ADUser <account> -Properties LockedOut, "
        "PasswordExpired), that the username has the form the server expects "
        "(user@domain or DOMAIN\\user), and that the EWS virtual directory allows this "
        "authentication scheme (Get-WebServicesVirtualDirectory | fl *Authentication*).",
        step="connect",
        for_resource=False,
    ),
)

# exchangelib's exceptions, first match wins: keep a subclass above its base class.
EWS_ERRORS: tuple[Row, ...] = (
    Row(
        (ews.ErrorAccessDenied, ews.ErrorFolderNotFound),
        when="delegated",
        code="{kind}",
        message="{signed_in} may not read the calendar of {mailbox}.",
        hint="A delegated sign-in reads the rooms {signed_in} has rights on: give it at least "
        "Reviewer on the room's calendar (Add-MailboxFolderPermission -Identity {room}:\\Calendar "
        "-User {signed_in} -AccessRights Reviewer) or full access (Add-MailboxPermission "
        "-Identity {room} -User {signed_in} -AccessRights FullAccess -AutoMapping $false). "
        "Rights can take up to two hours to apply.",
    ),
    Row(
        (ews.ErrorAccessDenied,),
        when="oauth",
        code="ErrorAccessDenied",
        message="Exchange denied app {account} access to {mailbox}.",
        hint="The app may only read mailboxes in its scope: check the RBAC for Applications "
        "management scope (Get-ManagementRoleAssignment -RoleAssignee {account}) or the "
        "application access policy (Test-ApplicationAccessPolicy -Identity {room} -AppId "
        "{account}).",
    ),
    Row(
        (ews.ErrorAccessDenied,),
        code="ErrorAccessDenied",
        message="{account} may not read the calendar of {mailbox}.",
        hint="Give the service account rights on the room mailbox, e.g. Add-MailboxPermission "
        "-Identity {room} -User {account} -AccessRights FullAccess -AutoMapping $false, or at "
        "least Add-MailboxFolderPermission -Identity {room}:\\Calendar -User {account} "
        "-AccessRights Reviewer. Rights can take up to two hours to apply.",
    ),
    Row(
        (ews.ErrorNonExistentMailbox, ews.ErrorInvalidSmtpAddress),
        code="ErrorNonExistentMailbox",
        message="Exchange has no mailbox with the address {mailbox}.",
        hint="Check the resource's address: it must be the room's primary SMTP address "
        "(Get-Mailbox {room} | fl PrimarySmtpAddress, or Get-Mailbox -RecipientTypeDetails "
        "RoomMailbox to list the rooms).",
    ),
    Row(
        (ews.ErrorImpersonateUserDenied, ews.ErrorImpersonationFailed),
        when="delegated",
        code="ErrorImpersonateUserDenied",
        message="Exchange refused to let {signed_in} act as {mailbox} (impersonation denied).",
        hint="A delegated token cannot impersonate in Exchange Online (the "
        "ApplicationImpersonation role is retired): it reads a room as its delegate, which "
        "needs rights of {signed_in} on the room (Add-MailboxFolderPermission -Identity "
        "{room}:\\Calendar -User {signed_in} -AccessRights Reviewer). full_access_as_app does "
        "not apply to a delegated sign-in; for app-only access, switch the app registration "
        "to the client-credentials flow.",
    ),
    Row(
        (ews.ErrorImpersonateUserDenied, ews.ErrorImpersonationFailed),
        when="oauth",
        code="ErrorImpersonateUserDenied",
        message="{account} may not act as {mailbox} (impersonation denied).",
        hint="The app registration lacks the application permission full_access_as_app "
        "(API 'Office 365 Exchange Online'), or admin consent was not granted: add it in "
        "Entra ID > App registrations > API permissions and click 'Grant admin consent'.",
    ),
    Row(
        (ews.ErrorImpersonateUserDenied, ews.ErrorImpersonationFailed),
        code="ErrorImpersonateUserDenied",
        message="{account} may not act as {mailbox} (impersonation denied).",
        hint="The service account may not impersonate: New-ManagementRoleAssignment -Role "
        "ApplicationImpersonation -User {account} (or use delegate rights with "
        "Add-MailboxPermission instead).",
    ),
    Row(
        (ews.ErrorServerBusy, ews.RateLimitError),
        code="ErrorServerBusy",
        message="Exchange at {host} is busy and asked to wait longer than this refresh may.",
        hint="EWS throttling: the account sends more than its throttling policy allows. Lower "
        "EWS_MAX_CONCURRENCY or raise cachePersistence, or give the service account a roomier "
        "policy (New-ThrottlingPolicy ... ; Set-ThrottlingPolicyAssociation {account} "
        "-ThrottlingPolicy <policy>).",
        retryable=True,
    ),
    Row(
        (ews.ErrorMailboxMoveInProgress, ews.ErrorMailboxStoreUnavailable),
        code="{kind}",
        message="The mailbox {mailbox} is temporarily unavailable.",
        hint="The mailbox is being moved or its database is offline; it comes back by itself "
        "(Get-MoveRequest, Get-MailboxDatabaseCopyStatus).",
        retryable=True,
    ),
    Row(
        (ews.ErrorFolderNotFound, ews.ErrorItemNotFound),
        code="{kind}",
        message="The calendar folder of {mailbox} was not found.",
        hint="The mailbox has no default calendar (it was never opened, or is not a user or "
        "room mailbox): open it once in Outlook on the web, or check "
        "Get-MailboxFolderStatistics {room} -FolderScope Calendar.",
    ),
    Row(
        (
            ews.ErrorSchemaValidation,
            ews.ErrorInvalidServerVersion,
            ews.ErrorIncorrectSchemaVersion,
            ews.ErrorInvalidSchemaVersionForMailboxVersion,
        ),
        code="schema",
        message="Exchange at {host} refused the request as invalid for its version ({kind}).",
        hint="The Exchange version remembered for this server no longer matches it (an upgrade "
        "or a move to another server): the next refresh learns it again. If this persists, a "
        "load balancer mixes Exchange versions or a proxy rewrites the requests. Exchange's "
        "message: {first_line}",
    ),
    Row(
        (
            ews.ErrorInternalServerError,
            ews.ErrorInternalServerTransientError,
            ews.ErrorExceededFindCountLimit,
            ews.ErrorCalendarViewRangeTooBig,
        ),
        code="{kind}",
        message="Exchange at {host} could not read {mailbox} ({kind}).",
        hint="A failure inside Exchange: it usually passes. If it persists, the server's event "
        "log (MSExchange Web Services) and the EWS throttling policy (Get-ThrottlingPolicy | fl "
        "EWS*) say why. Exchange's message: {first_line}",
        retryable=True,
    ),
    Row(
        (ews.RedirectError,),
        code="redirect",
        message="{endpoint} redirects elsewhere instead of answering EWS.",
        hint="The base URI points at a page that redirects (Outlook on the web, a login portal "
        "or a reverse proxy): give the Exchange server's URL, e.g. https://mail.example.com.",
        step="connect",
        for_resource=False,
    ),
    *UNAUTHORIZED,
    Row(
        (ews.CASError,),
        code="cas-error",
        message="Exchange at {host} could not route the request ({cas_error}).",
        hint="The Client Access service could not reach the mailbox server: check the health "
        "of the Exchange servers (Test-ServiceHealth).",
        retryable=True,
    ),
)

# Read only when no link of the chain is a recognised EWS failure or a network failure.
LAST_RESORT: tuple[Row, ...] = (
    Row(
        (ews.ErrorTimeoutExpired,),
        code="timeout",
        message="Exchange at {host} did not answer in time.",
        hint="Exchange is slow or unreachable from this machine: check the firewall and the "
        "server's load, or raise EXCHANGE_REQUEST_TIMEOUT.",
        retryable=True,
    ),
    Row(
        (ews.TransportError, ews.EWSError),
        code="{kind}",
        message="Exchange at {host} answered something that is not EWS ({kind}).",
        hint="Check that the base URI is the Exchange server (EWS at "
        "<base URI>/EWS/Exchange.asmx) and that no proxy rewrites the answers.",
    ),
)


def _first_row(rows: tuple[Row, ...], exc: BaseException, ctx: ErrorContext) -> SourceError | None:
    for row in rows:
        if row.matches(exc, ctx):
            return row.error(exc, ctx)
    return None


def _unauthorized(exc: BaseException, ctx: ErrorContext) -> SourceError:
    # The last row holds for any context.
    row = next(row for row in UNAUTHORIZED if row.holds_for(ctx))
    return row.error(exc, ctx)


def _http(exc: EwsHttpError, ctx: ErrorContext) -> SourceError:
    error = _http_error(exc, ctx)
    error.upstream = f"HTTP {exc.status}"
    return error


def _http_error(exc: EwsHttpError, ctx: ErrorContext) -> SourceError:
    if exc.status == 401:
        return _unauthorized(exc, ctx)
    if exc.status == 403 and (ctx.oauth or ctx.exchange_online):
        return SourceError(
            f"Exchange Online refused EWS to app {ctx.account} (HTTP 403).",
            code="ews-blocked",
            hint="The tenant blocks EWS for this application. An Exchange administrator can "
            "allow it until 1 April 2027: Set-OrganizationConfig -EwsEnabled $true, then "
            "Set-OrganizationConfig -EwsAllowedAppIDs @{Add='"
            + ctx.account
            + "'}. "
            + EWS_RETIREMENT,
            step="connect",
        )
    if exc.status == 403:
        return SourceError(
            f"Exchange at {ctx.host} refused EWS to {ctx.account} (HTTP 403).",
            code="ews-forbidden",
            hint="EWS is disabled for this account or restricted on the server: "
            f"Set-CASMailbox {ctx.account} -EwsEnabled $true, check Get-OrganizationConfig | "
            "fl Ews* (EwsApplicationAccessPolicy, allow and block lists), and the IP and SSL "
            "restrictions of the EWS virtual directory in IIS.",
            step="connect",
        )
    if exc.status == 404:
        return SourceError(
            f"There is no EWS endpoint at {ctx.endpoint} (HTTP 404).",
            code="endpoint-not-found",
            hint="Check the base URI: EWS is at <base URI>/EWS/Exchange.asmx on the Exchange "
            "server (or its load balancer), e.g. https://mail.example.com. "
            "Get-WebServicesVirtualDirectory | fl ExternalUrl,InternalUrl shows the URL.",
            retryable=True,
            step="connect",
        )
    if exc.status == 503:
        return SourceError(
            f"EWS at {ctx.host} is unavailable (HTTP 503).",
            code="http-503",
            hint="IIS or the load balancer in front of Exchange answers that EWS is not "
            "available: the EWS application pool (MSExchangeServicesAppPool) is stopped or "
            "recycling, the server is in maintenance, or no server behind the load balancer "
            "is healthy. It usually passes; if not, check the pool in IIS and the load "
            "balancer's health checks.",
            retryable=True,
        )
    if exc.status >= 500:
        return SourceError(
            f"Exchange at {ctx.host} failed with HTTP {exc.status}.",
            code=f"http-{exc.status}",
            hint="A server-side failure: it usually passes. If it persists, look at the "
            "Exchange server's event log and the health of the EWS application pool "
            "(MSExchangeServicesAppPool).",
            retryable=True,
        )
    return SourceError(
        f"Exchange at {ctx.host} answered HTTP {exc.status}.",
        code=f"http-{exc.status}",
        hint="The server did not answer as EWS does: check the base URI and any proxy in "
        "front of Exchange.",
    )


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _rewrapped(exc: BaseException) -> bool:
    return isinstance(exc, ews.ErrorServerBusy) and str(exc).startswith("Reraised from")


def source_error(exc: BaseException, ctx: ErrorContext) -> SourceError:
    """The SourceError for anything raised while reading EWS."""
    if isinstance(exc, SourceError):
        return exc
    # exchangelib wraps a time-out or transient error it would retry in an
    # ErrorServerBusy "Reraised from ..."; tried once (the console), the wrapped one is
    # the news.
    chain = [link for link in _chain(exc) if not _rewrapped(link)]
    for link in chain:
        if isinstance(link, EwsHttpError):
            return _http(link, ctx)
        mapped = _first_row(EWS_ERRORS, link, ctx)
        if mapped is not None:
            return mapped
    for link in chain:
        mapped = network_error(link, ctx.endpoint)
        if mapped is not None:
            return mapped
    for link in chain:
        mapped = _first_row(LAST_RESORT, link, ctx)
        if mapped is not None:
            return mapped
    log.error("Unexpected EWS failure for %s", ctx.endpoint, exc_info=exc)
    return SourceError(
        f"Reading {_mailbox(ctx)} from {ctx.host} failed ({type(exc).__name__}).",
        code="error",
        hint="An unexpected failure: the server log of ews-calendar has the details.",
        resource=ctx.resource,
        upstream=type(exc).__name__,
    )
