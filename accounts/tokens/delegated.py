"""The delegated flow: a service account signs in once, its refresh token does the rest.

For tenants that refuse app-only permissions (SPEC): ``start_sign_in`` begins
msal's authorization code flow with PKCE for the resource of
``sign_in_scope``, ``finish_sign_in`` redeems the code the browser brings back
(``accounts.views`` keeps the flow in the session in between) and stores the
refresh token, encrypted, on the app registration. ``acquire_delegated`` then
serves tokens from the shared cache or from that refresh token, and keeps the
token the identity platform rotates. When the identity platform refuses it
(expired, revoked, consent or MFA required), the app registration is marked
``reauth_needed`` and every calendar using it says "Re-authentication needed"
until someone signs in again.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import requests
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


def sign_in_scope(app: AppRegistration) -> str:
    """The resource the sign-in asks consent for: that of the first server using the app.

    Entra ID grants one resource per request; the refresh token it returns
    then serves the other resources the account has consented to as well.
    """
    server = app.servers.exclude(base_uri="").order_by("pk").first()
    base = server.base_uri if server is not None else GRAPH_DEFAULT_BASE_URI
    return f"{base.rstrip('/')}/.default"


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
    elif app.reauth_needed:
        AppRegistration.objects.filter(pk=app.pk).update(reauth_needed=False)
        app.reauth_needed = False
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
        _mark_reauth_needed(app)
        description = first_sentence_block(str(result.get("error_description") or ""))
        return _reauth_error(app, description or str(result.get("error")))
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


def _mark_reauth_needed(app: AppRegistration) -> None:
    AppRegistration.objects.filter(pk=app.pk).update(reauth_needed=True)
    app.reauth_needed = True


def _reauth_error(app: AppRegistration, why: str) -> SourceError:
    return SourceError(
        f"Re-authentication needed: the service account of {app.name} must sign in again ({why}).",
        code="reauth-needed",
        hint='Open the app registration in the admin and click "Sign in", then sign in as '
        f"{app.account or 'the service account'}. Refresh tokens stop working after 90 days "
        "without use, a password change, or when an administrator revokes the sessions.",
        step="token",
    )
