"""Graph's error answers as SourceErrors an administrator can act on."""

from __future__ import annotations

import requests

from connector.core.errors import SourceError

# Codes of a delta token Graph no longer honours: start the round again from scratch
# (https://learn.microsoft.com/graph/errors, https://learn.microsoft.com/graph/delta-query-overview).
RESYNC_CODES = frozenset({"syncstatenotfound", "resyncrequired", "syncstateinvalid"})


def error_code(response: requests.Response) -> tuple[str, str]:
    """The ``error.code`` and ``error.message`` of a Graph error body ('' when none)."""
    try:
        error = response.json().get("error", {})
        return str(error.get("code", "")), str(error.get("message", ""))
    except (ValueError, AttributeError):
        return "", ""


def http_error(
    response: requests.Response, resource: str, client_id: str, *, delegate: str = ""
) -> SourceError:
    """The SourceError of an answer that is not a page, with Graph's own status and code.

    ``delegate``: the signed-in account of a delegated app registration ('' app-only).
    """
    error = _http_error_of(response, resource, client_id, delegate)
    error.upstream = f"HTTP {response.status_code} {error_code(response)[0]}".strip()
    if response.status_code in (429, 503, 504) and response.headers.get("Retry-After"):
        error.back_off = retry_after(response, 0)
    return error


def retry_after(response: requests.Response, attempt: int) -> float:
    """Seconds Graph asks to wait (Retry-After), or a back-off growing with the attempts."""
    header = response.headers.get("Retry-After", "")
    try:
        return max(float(header), 0.0)
    except ValueError:
        return float(min(2**attempt, 30))  # no (readable) Retry-After: back off


def _http_error_of(
    response: requests.Response, resource: str, client_id: str, delegate: str
) -> SourceError:
    """The SourceError, with its hint, of an answer that is not 200."""
    status = response.status_code
    code, message = error_code(response)
    if status == 403:
        if delegate:
            hint = (
                f"A delegated sign-in reads the rooms {delegate} has rights on, with the "
                "delegated permission Calendars.Read.Shared (Entra ID → App registrations "
                "→ API permissions → Microsoft Graph → Delegated, with consent). Give the "
                f"account at least Reviewer on the room's calendar: "
                f"Add-MailboxFolderPermission -Identity {resource}:\\Calendar -User "
                f"{delegate} -AccessRights Reviewer."
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
