"""What went wrong talking EWS, as an Exchange administrator reads it.

exchangelib raises its own exceptions (often chained: a ConnectionError inside
an ErrorTimeoutExpired, an ErrorImpersonateUserDenied inside a TransportError).
``source_error`` walks the chain and turns the first one it recognises into a
SourceError whose hint names the fix, as the admin would apply it. No message
carries a password, a client secret or a token.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

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


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:300]


def _mailbox(ctx: ErrorContext) -> str:
    return ctx.resource or "the account's own mailbox"


def _unauthorized(ctx: ErrorContext) -> SourceError:
    if ctx.oauth:
        return SourceError(
            f"Exchange at {ctx.host} refused the OAuth token of app {ctx.account}.",
            code="token-rejected",
            hint="The token was issued but Exchange does not accept it: give the app "
            "registration the application permission full_access_as_app (Office 365 Exchange "
            "Online) and grant admin consent, and check that the app registration's tenant is "
            "the tenant of the mailboxes.",
            step="connect",
        )
    if ctx.exchange_online:
        return SourceError(
            f"Exchange Online refused the {ctx.scheme} login of {ctx.account}.",
            code="basic-auth-disabled",
            hint="Exchange Online switched off basic (password) authentication for EWS in "
            "2022. Use an app registration instead: a server of type graph (recommended), or "
            "type ews with OAuth and the full_access_as_app permission until April 2027.",
            step="connect",
        )
    return SourceError(
        f"Exchange at {ctx.host} refused the login of {ctx.account} ({ctx.scheme}).",
        code="wrong-password",
        hint="Check the username and password of the service account (the password may have "
        "expired or the account may be locked: Get-ADUser <account> -Properties LockedOut, "
        "PasswordExpired), that the username has the form the server expects "
        "(user@domain or DOMAIN\\user), and that the EWS virtual directory allows this "
        "authentication scheme (Get-WebServicesVirtualDirectory | fl *Authentication*).",
        step="connect",
    )


def _http(exc: EwsHttpError, ctx: ErrorContext) -> SourceError:
    if exc.status == 401:
        return _unauthorized(ctx)
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


def _ews(exc: BaseException, ctx: ErrorContext) -> SourceError | None:
    mailbox = _mailbox(ctx)
    if isinstance(exc, ews.ErrorAccessDenied):
        if ctx.oauth:
            return SourceError(
                f"Exchange denied app {ctx.account} access to {mailbox}.",
                code="ErrorAccessDenied",
                hint="The app may only read mailboxes in its scope: check the RBAC for "
                "Applications management scope (Get-ManagementRoleAssignment -RoleAssignee "
                f"{ctx.account}) or the application access policy (Test-ApplicationAccessPolicy "
                f"-Identity {ctx.resource or '<room>'} -AppId {ctx.account}).",
                resource=ctx.resource,
            )
        room = ctx.resource or "<room>"
        return SourceError(
            f"{ctx.account} may not read the calendar of {mailbox}.",
            code="ErrorAccessDenied",
            hint="Give the service account rights on the room mailbox, e.g. "
            f"Add-MailboxPermission -Identity {room} -User {ctx.account} -AccessRights "
            f"FullAccess -AutoMapping $false, or at least "
            f"Add-MailboxFolderPermission -Identity {room}:\\Calendar -User {ctx.account} "
            "-AccessRights Reviewer. Rights can take up to two hours to apply.",
            resource=ctx.resource,
        )
    if isinstance(exc, ews.ErrorNonExistentMailbox | ews.ErrorInvalidSmtpAddress):
        return SourceError(
            f"Exchange has no mailbox with the address {mailbox}.",
            code="ErrorNonExistentMailbox",
            hint="Check the resource's address: it must be the room's primary SMTP address "
            f"(Get-Mailbox {ctx.resource or '<room>'} | fl PrimarySmtpAddress, or "
            "Get-Mailbox -RecipientTypeDetails RoomMailbox to list the rooms).",
            resource=ctx.resource,
        )
    if isinstance(exc, ews.ErrorImpersonateUserDenied | ews.ErrorImpersonationFailed):
        if ctx.oauth:
            hint = (
                "The app registration lacks the application permission full_access_as_app "
                "(API 'Office 365 Exchange Online'), or admin consent was not granted: add it "
                "in Entra ID > App registrations > API permissions and click 'Grant admin "
                "consent'."
            )
        else:
            hint = (
                "The service account may not impersonate: New-ManagementRoleAssignment "
                f"-Role ApplicationImpersonation -User {ctx.account} (or use delegate rights "
                "with Add-MailboxPermission instead)."
            )
        return SourceError(
            f"{ctx.account} may not act as {mailbox} (impersonation denied).",
            code="ErrorImpersonateUserDenied",
            hint=hint,
            resource=ctx.resource,
        )
    if isinstance(exc, ews.ErrorServerBusy | ews.RateLimitError):
        return SourceError(
            f"Exchange at {ctx.host} is busy and asked to wait longer than this refresh may.",
            code="ErrorServerBusy",
            hint="EWS throttling: the account sends more than its throttling policy allows. "
            "Lower EWS_MAX_CONCURRENCY or raise cachePersistence, or give the service account "
            "a roomier policy (New-ThrottlingPolicy ... ; Set-ThrottlingPolicyAssociation "
            f"{ctx.account} -ThrottlingPolicy <policy>).",
            retryable=True,
            resource=ctx.resource,
        )
    if isinstance(exc, ews.ErrorMailboxMoveInProgress | ews.ErrorMailboxStoreUnavailable):
        return SourceError(
            f"The mailbox {mailbox} is temporarily unavailable.",
            code=type(exc).__name__,
            hint="The mailbox is being moved or its database is offline; it comes back by "
            "itself (Get-MoveRequest, Get-MailboxDatabaseCopyStatus).",
            retryable=True,
            resource=ctx.resource,
        )
    if isinstance(exc, ews.ErrorFolderNotFound | ews.ErrorItemNotFound):
        return SourceError(
            f"The calendar folder of {mailbox} was not found.",
            code=type(exc).__name__,
            hint="The mailbox has no default calendar (it was never opened, or is not a user "
            "or room mailbox): open it once in Outlook on the web, or check "
            f"Get-MailboxFolderStatistics {ctx.resource or '<room>'} -FolderScope Calendar.",
            resource=ctx.resource,
        )
    if isinstance(
        exc,
        ews.ErrorSchemaValidation
        | ews.ErrorInvalidServerVersion
        | ews.ErrorIncorrectSchemaVersion
        | ews.ErrorInvalidSchemaVersionForMailboxVersion,
    ):
        return SourceError(
            f"Exchange at {ctx.host} refused the request as invalid for its version "
            f"({type(exc).__name__}).",
            code="schema",
            hint="The Exchange version remembered for this server no longer matches it (an "
            "upgrade or a move to another server): the next refresh learns it again. If this "
            "persists, a load balancer mixes Exchange versions or a proxy rewrites the "
            "requests. Exchange's message: " + _first_line(str(exc)),
            resource=ctx.resource,
        )
    if isinstance(
        exc,
        ews.ErrorInternalServerError
        | ews.ErrorInternalServerTransientError
        | ews.ErrorExceededFindCountLimit
        | ews.ErrorCalendarViewRangeTooBig,
    ):
        return SourceError(
            f"Exchange at {ctx.host} could not read {_mailbox(ctx)} ({type(exc).__name__}).",
            code=type(exc).__name__,
            hint="A failure inside Exchange: it usually passes. If it persists, the server's "
            "event log (MSExchange Web Services) and the EWS throttling policy "
            "(Get-ThrottlingPolicy | fl EWS*) say why. Exchange's message: "
            + _first_line(str(exc)),
            retryable=True,
            resource=ctx.resource,
        )
    if isinstance(exc, ews.RedirectError):
        return SourceError(
            f"{ctx.endpoint} redirects elsewhere instead of answering EWS.",
            code="redirect",
            hint="The base URI points at a page that redirects (Outlook on the web, a login "
            "portal or a reverse proxy): give the Exchange server's URL, "
            "e.g. https://mail.example.com.",
            step="connect",
        )
    if isinstance(exc, ews.UnauthorizedError):
        return _unauthorized(ctx)
    if isinstance(exc, ews.CASError):
        return SourceError(
            f"Exchange at {ctx.host} could not route the request ({exc.cas_error}).",
            code="cas-error",
            hint="The Client Access service could not reach the mailbox server: check the "
            "health of the Exchange servers (Test-ServiceHealth).",
            retryable=True,
            resource=ctx.resource,
        )
    return None


def source_error(exc: BaseException, ctx: ErrorContext) -> SourceError:
    """The SourceError for anything raised while reading EWS."""
    if isinstance(exc, SourceError):
        return exc
    chain = list(_chain(exc))
    for link in chain:
        if isinstance(link, EwsHttpError):
            return _http(link, ctx)
        mapped = _ews(link, ctx)
        if mapped is not None:
            return mapped
    for link in chain:
        mapped = network_error(link, ctx.endpoint)
        if mapped is not None:
            return mapped
    for link in chain:
        if isinstance(link, ews.ErrorTimeoutExpired):
            return SourceError(
                f"Exchange at {ctx.host} did not answer in time.",
                code="timeout",
                hint="Exchange is slow or unreachable from this machine: check the firewall "
                "and the server's load, or raise EXCHANGE_REQUEST_TIMEOUT.",
                retryable=True,
                resource=ctx.resource,
            )
        if isinstance(link, ews.TransportError | ews.EWSError):
            return SourceError(
                f"Exchange at {ctx.host} answered something that is not EWS "
                f"({type(link).__name__}).",
                code=type(link).__name__,
                hint="Check that the base URI is the Exchange server (EWS at "
                "<base URI>/EWS/Exchange.asmx) and that no proxy rewrites the answers.",
                resource=ctx.resource,
            )
    log.error("Unexpected EWS failure for %s", ctx.endpoint, exc_info=exc)
    return SourceError(
        f"Reading {_mailbox(ctx)} from {ctx.host} failed ({type(exc).__name__}).",
        code="error",
        hint="An unexpected failure: the server log of ews-calendar has the details.",
        resource=ctx.resource,
    )
