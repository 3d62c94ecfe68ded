"""What the identity platform's refusals mean, in words an administrator can act on.

An answer without a token carries an AADSTS number (in ``error_codes``, as
numbers or strings, or in the description); the codes an administrator can fix
get a message and a hint of their own. msal's ``ValueError`` while it builds
the authority (unknown tenant, bad URL) and network failures get theirs too.
Every error is a ``SourceError`` of step ``token``, which the refresh step and
the test console show as they are.

A secret the identity platform calls expired (AADSTS7000222) is recorded on
the app registration (``secret_expired_at``): the expiry warnings of the admin,
the status page and the daily mail read it (``connector.services.expiry``).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from django.utils import timezone

from accounts.models import AppRegistration
from connector.core.errors import SourceError
from connector.core.network import network_error

log = logging.getLogger(__name__)

_AADSTS = re.compile(r"AADSTS(\d+)")


def aadsts_code(result: dict[str, Any]) -> int:
    """The AADSTS number: error_codes (numbers, or strings of them) or the description's."""
    codes = result.get("error_codes") or []
    for code in codes if isinstance(codes, list) else [codes]:
        match = re.fullmatch(r"\s*(?:AADSTS)?(\d+)\s*", str(code))
        if match:
            return int(match.group(1))
    match = _AADSTS.search(str(result.get("error_description") or ""))
    return int(match.group(1)) if match else 0


def first_sentence_block(description: str) -> str:
    """The error description without Entra's trace/correlation/timestamp tail."""
    for marker in ("\r\nTrace ID:", "\nTrace ID:", " Trace ID:"):
        if marker in description:
            description = description.split(marker, 1)[0]
    return description.strip()


def aadsts_hint(code: int, app: AppRegistration) -> tuple[str, str, bool]:
    """Message, hint and whether retrying can help, for an AADSTS code."""
    if code == 7000215:
        return (
            "The identity platform refused the client secret (AADSTS7000215: invalid client "
            "secret).",
            "Enter the client secret's VALUE, not its secret ID: in Entra ID → App "
            f"registrations → {app.client_id} → Certificates & secrets, the value is shown "
            "only once, right after the secret is created; if it is lost, create a new secret.",
            False,
        )
    if code == 7000222:
        return (
            "The client secret of this app registration has expired (AADSTS7000222).",
            "Create a new client secret in Entra ID → App registrations → "
            f"{app.client_id} → Certificates & secrets → New client secret, then enter its "
            "value and its expiry date in this app registration.",
            False,
        )
    if code == 700016:
        return (
            f"The application {app.client_id} is not known in tenant {app.tenant} (AADSTS700016).",
            "Check the application (client) id and the tenant: the app must be registered in "
            "this tenant, or a multi-tenant app must have received admin consent there "
            "(Entra ID → Enterprise applications).",
            False,
        )
    if code == 90002:
        return (
            f"The tenant {app.tenant} does not exist at {app.authority} (AADSTS90002).",
            "Check the tenant: its directory (tenant) id, a GUID, or its domain such as "
            "contoso.onmicrosoft.com; for a national cloud, also the authority host "
            "(e.g. https://login.microsoftonline.us).",
            False,
        )
    if code == 500011:
        return (
            "The identity platform does not know the resource asked for (AADSTS500011).",
            "Check the server's base URI (https://graph.microsoft.com or "
            "https://outlook.office365.com, or the national-cloud equivalent) and that "
            "the tenant has Exchange Online.",
            False,
        )
    return ("", "", False)


def token_error(app: AppRegistration, result: dict[str, Any]) -> SourceError:
    """An answer without a token; an expired secret is recorded on ``app`` as well."""
    description = str(result.get("error_description") or "")
    code = aadsts_code(result)
    message, hint, retryable = aadsts_hint(code, app)
    if code == 7000222:
        _mark_expired(app)
    if not message:
        error = str(result.get("error") or "error")
        message = (
            f"The identity platform refused a token ({error}): "
            f"{first_sentence_block(description) or 'no description'}"
        )
        hint = (
            "Check the app registration (tenant, client id, secret and its API permissions "
            "with admin consent) in Entra ID."
        )
        retryable = error in ("temporarily_unavailable", "server_error")
    log.warning("token request for app registration %s failed: AADSTS%s", app.name, code)
    return SourceError(
        message,
        code=f"AADSTS{code}" if code else str(result.get("error") or "token"),
        hint=hint,
        retryable=retryable,
        step="token",
        upstream=f"AADSTS{code}" if code else str(result.get("error") or ""),
    )


def authority_error(app: AppRegistration, exc: ValueError) -> SourceError:
    """msal raises ValueError while building the authority (unknown tenant, bad URL).

    msal re-raises the discovery failure (which holds Entra's AADSTS body) as a
    generic ValueError, so the code is looked for along the exception chain.
    """
    texts: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(texts) < 5:
        texts.append(str(current))
        current = current.__cause__ or current.__context__
    match = _AADSTS.search(" ".join(texts))
    if match:
        message, hint, retryable = aadsts_hint(int(match.group(1)), app)
        if message:
            return SourceError(message, code=f"AADSTS{match.group(1)}", hint=hint, step="token")
    return SourceError(
        f"The identity platform at {app.authority} could not be used for tenant {app.tenant}.",
        code="authority",
        hint="Check the authority (https://login.microsoftonline.com, or a national cloud's "
        "host) and the tenant id or domain of the app registration.",
        step="token",
    )


def request_error(app: AppRegistration, exc: Exception) -> SourceError:
    """Network failures, and answers without a token body (5xx pages, proxies)."""
    error = network_error(exc, app.authority, step="token")
    if error is not None:
        return error
    return SourceError(
        f"The identity platform at {app.authority} answered with an error.",
        code="token-http",
        hint="The identity platform is unavailable; this is usually brief. Try again later.",
        retryable=True,
        step="token",
        upstream=type(exc).__name__,
    )


def _mark_expired(app: AppRegistration) -> None:
    now = timezone.now()
    AppRegistration.objects.filter(pk=app.pk).update(secret_expired_at=now)
    app.secret_expired_at = now
