"""The delegated flow: a service account signs in once, its refresh token does the rest.

For tenants that refuse app-only permissions (SPEC): ``start_sign_in`` begins
msal's authorization code flow with PKCE for the resource of
``sign_in_scope``, ``finish_sign_in`` redeems the code the browser brings back
(``accounts.views`` keeps the flow in the session in between) and stores the
refresh token, encrypted, on the app registration. ``acquire_delegated`` then
serves tokens from the shared cache or from that refresh token, and keeps the
token the identity platform rotates.

Delegated tokens ask for one permission, the least a server type needs to read
rooms the account has rights on (``delegated_scope``): Graph's
``Calendars.Read.Shared``, EWS's ``EWS.AccessAsUser.All``.

When the identity platform refuses the refresh token (``invalid_grant``: revoked
or password changed AADSTS50173, expired AADSTS700082, consent withdrawn
AADSTS65001, MFA required), the app registration is marked ``reauth_needed``:
from that first failure on, every calendar using it says "Re-authentication
needed" without asking the identity platform again, and ADMINS get one mail for
the incident (the conditional UPDATE that sets the mark is the claim, so two
processes never both mail). Signing in again ends the incident.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.mail import send_mail
from msal.exceptions import MsalServiceError

from accounts.models import GRAPH_DEFAULT_BASE_URI, AppRegistration
from accounts.tokens.clients import (
    AccessToken,
    Client,
    access_token,
    acquire,
    client_for,
    client_or_error,
    load_shared_cache,
    save_shared_cache,
    send,
)
from accounts.tokens.errors import (
    aadsts_code,
    aadsts_hint,
    authority_error,
    first_sentence_block,
    request_error,
    token_error,
)
from connector.core.errors import SourceError

log = logging.getLogger(__name__)


# The delegated permission a server type reads room calendars with: the rooms the
# signed-in account has rights on, nothing else of the tenant.
DELEGATED_PERMISSIONS = {"graph": "Calendars.Read.Shared", "ews": "EWS.AccessAsUser.All"}


def delegated_scope(resource: str, server_type: str) -> str:
    """The scope of a delegated token for the server at ``resource`` (a URL)."""
    parts = urlsplit(resource)
    origin = f"{parts.scheme or 'https'}://{parts.netloc}" if parts.netloc else resource
    return f"{origin.rstrip('/')}/{DELEGATED_PERMISSIONS[server_type]}"


def token_scope(app: AppRegistration, resource: str, server_type: str) -> str:
    """The scope to ask for ``resource``: the app's own permissions (``.default``) when
    app-only, the delegated permission of ``server_type`` with the delegated flow."""
    if app.flow == AppRegistration.Flow.DELEGATED:
        return delegated_scope(resource, server_type)
    parts = urlsplit(resource)
    origin = f"{parts.scheme or 'https'}://{parts.netloc}" if parts.netloc else resource
    return f"{origin.rstrip('/')}/.default"


def sign_in_scope(app: AppRegistration) -> str:
    """What the sign-in asks consent for: the permission of the first server using the app.

    Entra ID grants a token for one resource per request; the refresh token it
    returns then serves the other resources the account or an administrator has
    consented to as well.
    """
    server = (
        app.servers.filter(type__in=list(DELEGATED_PERMISSIONS))
        .exclude(base_uri="")
        .order_by("pk")
        .first()
    )
    if server is None:
        return delegated_scope(GRAPH_DEFAULT_BASE_URI, "graph")
    return delegated_scope(server.base_uri, server.type)


def start_sign_in(app: AppRegistration, redirect_uri: str) -> dict[str, Any]:
    """Begin the authorization code flow (with PKCE); keep the result in the session.

    The returned dict holds ``auth_uri``, where the browser goes next.
    """
    try:
        client = client_for(app)
        with warnings.catch_warnings():
            # msal recommends response_mode=form_post. Its cross-site POST back would
            # arrive without our SameSite=Lax session cookie, which holds the flow; the
            # code in the query is single-use and useless without that flow's PKCE
            # verifier, which never leaves the server.
            warnings.filterwarnings("ignore", message="response_mode='form_post'")
            return client.msal.initiate_auth_code_flow(
                [sign_in_scope(app)],
                redirect_uri=redirect_uri,
                login_hint=app.account or None,
                prompt="select_account",
            )
    except ValueError as exc:
        raise authority_error(app, exc) from None
    except (requests.RequestException, MsalServiceError) as exc:
        raise request_error(app, exc) from None


def finish_sign_in(app: AppRegistration, flow: dict[str, Any], answer: dict[str, str]) -> str:
    """Redeem the code the identity platform sent back; returns the account signed in."""
    if answer.get("error"):
        message, hint, _ = aadsts_hint(aadsts_code(answer), app)
        raise SourceError(
            message or f"The sign-in did not complete ({answer.get('error')}).",
            code=str(answer.get("error")),
            hint=hint or first_sentence_block(str(answer.get("error_description") or "")),
            step="token",
        )
    client = client_or_error(app)

    def redeem() -> dict[str, Any]:
        try:
            return client.msal.acquire_token_by_auth_code_flow(flow, answer)
        except ValueError:
            # msal: the state does not match, or the flow was already used.
            raise SourceError(
                "The sign-in answer does not belong to the sign-in started here.",
                code="sign-in-state",
                hint="Start the sign-in again from the app registration's page, in one tab.",
                step="token",
            ) from None

    with client.lock:
        load_shared_cache(client, app)
        result, _ = send(client, app, redeem)
        if "access_token" not in result:
            raise token_error(app, result)
        account = str(result.get("id_token_claims", {}).get("preferred_username") or "")
        if app.account and account and account.lower() != app.account.lower():
            raise SourceError(
                f"Signed in as {account}, but this app registration is for {app.account}.",
                code="wrong-account",
                hint="Sign in with the service account named on the app registration (sign "
                "out of Microsoft in this browser first), or change the account there.",
                step="token",
            )
        save_shared_cache(client, app)
    _store_refresh_token(app, str(result.get("refresh_token") or ""), account=account)
    log.info("app registration %s: signed in as %s", app.name, account)
    return account


def acquire_delegated(app: AppRegistration, scope: str) -> AccessToken:
    """A token of the signed-in service account for ``scope``."""
    if not app.refresh_token:
        raise _reauth_error(app, "nobody has signed in yet")

    def redeem(client: Client) -> dict[str, Any]:
        if AppRegistration.objects.filter(pk=app.pk, reauth_needed=True).exists():
            # The refresh token was refused: asking again with it only fails again (and
            # counts as a failed sign-in) until someone signs in.
            app.reauth_needed = True
            raise _reauth_error(app, "the identity platform refused its sign-in")
        accounts = client.msal.get_accounts(username=app.account or None)
        result = None
        if accounts:
            result = client.msal.acquire_token_silent_with_error([scope], account=accounts[0])
        if result is None:
            # No usable account in the cache: the stored refresh token starts over.
            result = client.msal.acquire_token_by_refresh_token(app.refresh_token, [scope])
        return result

    answer = acquire(app, [scope], redeem, on_error=lambda result: _delegated_error(app, result))
    if answer.in_memory:
        return access_token(answer.result, from_cache=True)
    result = answer.result
    if result.get("refresh_token") and result["refresh_token"] != app.refresh_token:
        _store_refresh_token(app, str(result["refresh_token"]), account=app.account)
    return access_token(result, from_cache=not answer.sent)


def _delegated_error(app: AppRegistration, result: dict[str, Any]) -> SourceError:
    """A refused refresh token means the service account must sign in again."""
    code = aadsts_code(result)
    if result.get("error") in ("invalid_grant", "interaction_required") or code in (
        50076,
        50079,
        50173,
        65001,
        700082,
        700084,
    ):
        description = first_sentence_block(str(result.get("error_description") or ""))
        why = description or str(result.get("error"))
        _mark_reauth_needed(app, why)
        return _reauth_error(app, why)
    return token_error(app, result)


def _store_refresh_token(app: AppRegistration, refresh_token: str, *, account: str) -> None:
    """Keep the (rotated) refresh token, encrypted, without changing ``updated``.

    A queryset update: ``updated`` keys the in-process msal application, which
    must survive a token rotation.
    """
    changes: dict[str, Any] = {"reauth_needed": False}
    if refresh_token:
        changes["refresh_token"] = refresh_token
    if account and not app.account:
        changes["account"] = account
    AppRegistration.objects.filter(pk=app.pk).update(**changes)
    for name, value in changes.items():
        setattr(app, name, value)


def _mark_reauth_needed(app: AppRegistration, why: str) -> None:
    """The incident begins: marked once (the claim), and ADMINS are mailed once."""
    claimed = AppRegistration.objects.filter(pk=app.pk, reauth_needed=False).update(
        reauth_needed=True
    )
    app.reauth_needed = True
    if claimed:
        log.warning("app registration %s: re-authentication needed (%s)", app.name, why)
        _mail_admins(app, why)


def _mail_admins(app: AppRegistration, why: str) -> None:
    """One mail to ADMINS for the incident; a failure to mail never fails a refresh."""
    if not settings.ADMINS:
        log.warning("ADMINS is empty: no mail about the re-authentication of %s", app.name)
        return
    servers = list(app.servers.order_by("server_id"))
    calendars = sorted(
        calendar_id
        for server in servers
        for calendar_id in server.calendars.values_list("calendar_id", flat=True)  # type: ignore[attr-defined]
    )
    lines = [
        f"The delegated sign-in of app registration {app.name} "
        f"({app.account or 'its service account'}) stopped working:",
        f"  {why}",
        "",
        'Calendars read with it show "Re-authentication needed" and are not refreshed; '
        "feeds with sendCacheOnServerError keep serving their last good copy.",
    ]
    if servers:
        lines.append("Servers: " + ", ".join(server.server_id for server in servers) + ".")
    if calendars:
        lines.append("Calendars: " + ", ".join(calendars) + ".")
    lines += [
        "",
        f"To fix it: in the admin, open OAuth app registrations > {app.name} and click "
        f'"Re-authenticate", then sign in as {app.account or "the service account"}.',
        "",
        "This mail is sent once per incident; the next one only after a sign-in worked again.",
    ]
    try:
        send_mail(
            f"[ews-calendar] Re-authentication needed: app registration {app.name}",
            "\n".join(lines),
            settings.SERVER_EMAIL,
            [address for _, address in settings.ADMINS],
        )
    except Exception:
        log.exception("Could not mail ADMINS about the re-authentication of %s", app.name)


def _reauth_error(app: AppRegistration, why: str) -> SourceError:
    return SourceError(
        f"Re-authentication needed: the service account of {app.name} must sign in again ({why}).",
        code="reauth-needed",
        hint='Open the app registration in the admin and click "Re-authenticate", then sign in '
        f"as {app.account or 'the service account'}. Refresh tokens stop working after 90 days "
        "without use, after a password change, when an administrator revokes the sessions, "
        "or when the app's permissions are withdrawn.",
        step="token",
    )
