"""The client-credentials flow: the app registration's own token, with its secret.

App-only access (``Calendars.Read`` as an application permission, or EWS's
``full_access_as_app``): msal asks for a token with the client secret alone,
and the token cache of ``clients`` makes that one request per scope and token
lifetime. A token obtained again clears an expiry that the identity platform
reported earlier (the secret was replaced).

Secret rotation: a new secret entered in the admin waits in ``pending_secret``.
Whenever a token must be asked for, the pending secret is tried first; the
first token it produces makes it the secret (with its expiry), and until then
the old secret keeps every screen working. A refusal of the new secret is
kept in ``pending_secret_error`` (the AADSTS message and hint) for the page.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import msal
import requests
from msal.exceptions import MsalServiceError

from accounts.models import AppRegistration
from accounts.tokens.clients import (
    MICROSOFT_AUTHORITY_HOSTS,
    AccessToken,
    Client,
    _cached_token,
    _CountingSession,
    access_token,
    acquire,
)
from accounts.tokens.errors import authority_error, request_error, token_error
from connector.core import metrics
from connector.core.errors import SourceError

log = logging.getLogger(__name__)


def acquire_client_credentials(app: AppRegistration, scope: str) -> AccessToken:
    """A token of ``app`` itself for ``scope``."""
    answer = acquire(
        app,
        [scope],
        lambda client: _request(client, app, scope),
        on_error=lambda result: token_error(app, result),
    )
    if answer.in_memory:
        return access_token(answer.result, from_cache=True)
    if answer.sent and app.secret_expired_at is not None:
        # The secret works again (it was replaced): the expiry warning is over.
        AppRegistration.objects.filter(pk=app.pk).update(secret_expired_at=None)
        app.secret_expired_at = None
    log.info(
        "token for app registration %s: %s",
        app.name,
        "new" if answer.sent else "cached (shared cache)",
    )
    return access_token(answer.result, from_cache=not answer.sent)


def _request(client: Client, app: AppRegistration, scope: str) -> dict[str, Any]:
    """msal's answer for ``scope``: from the cache, else with the pending secret first."""
    cached = _cached_token(client, [scope])
    if cached is not None:
        return cached
    if app.pending_secret:
        promoted = try_pending_secret(app, scope)
        client.session.token_posts += app_posts(promoted)
        if promoted is not None:
            return {"access_token": promoted.token, "expires_in": promoted.lifetime}
    return client.msal.acquire_token_for_client(scopes=[scope])


@dataclass(frozen=True)
class FreshToken:
    token: str
    lifetime: float
    posts: int  # token requests sent to get it (counted by the caller's metric)

    def __repr__(self) -> str:  # never show the token itself
        return f"FreshToken(lifetime={self.lifetime})"


def request_with_secret(app: AppRegistration, secret: str, scope: str) -> FreshToken:
    """A token asked for now with ``secret``, bypassing every cache (Verify, rotation).

    Raises the ``SourceError`` of the refusal (``accounts.tokens.errors``).
    """
    session = _CountingSession()
    try:
        client = _throwaway_client(app, secret, session)
        result = client.acquire_token_for_client(scopes=[scope])
    except ValueError as exc:
        raise authority_error(app, exc) from None
    except (requests.RequestException, MsalServiceError) as exc:
        raise request_error(app, exc) from None
    finally:
        session.close()
    if "access_token" not in result:
        raise token_error(app, result)
    answer = access_token(result, from_cache=False)
    lifetime = float(result.get("expires_in", 3599) or 3599)
    return FreshToken(answer.token, lifetime, session.token_posts)


def app_posts(fresh: FreshToken | None) -> int:
    """Token requests behind ``fresh``: one when a pending secret was tried and refused."""
    return fresh.posts if fresh is not None else 1


def verify_token(app: AppRegistration, scope: str) -> AccessToken:
    """A token asked for now, whatever the caches hold (Verify: does the secret work now?).

    A pending secret is tried first, as for any token request, and replaces the
    old one when it works.
    """
    fresh = None
    if app.pending_secret:
        fresh = try_pending_secret(app, scope)
        metrics.TOKEN_REQUESTS.labels(app_registration=app.name).inc(app_posts(fresh))
    if fresh is None:
        try:
            fresh = request_with_secret(app, app.client_secret, scope)
        finally:
            metrics.TOKEN_REQUESTS.labels(app_registration=app.name).inc()
    return access_token(
        {"access_token": fresh.token, "expires_in": fresh.lifetime}, from_cache=False
    )


def try_pending_secret(app: AppRegistration, scope: str) -> FreshToken | None:
    """Try the new secret; when it gives a token it replaces the old one. None: refused."""
    try:
        fresh = request_with_secret(app, app.pending_secret, scope)
    except SourceError as error:
        text = error.as_text()
        AppRegistration.objects.filter(pk=app.pk).update(pending_secret_error=text)
        app.pending_secret_error = text
        log.warning(
            "the new client secret of app registration %s was refused (%s); "
            "the current secret stays in use",
            app.name,
            error.code,
        )
        return None
    promote_pending_secret(app)
    log.info("the new client secret of app registration %s works: it is now the secret", app.name)
    return fresh


def promote_pending_secret(app: AppRegistration) -> None:
    """The pending secret (and its expiry) becomes the secret; the old one is forgotten."""
    app.client_secret = app.pending_secret
    if app.pending_secret_expires is not None:
        app.secret_expires = app.pending_secret_expires
    app.pending_secret = ""
    app.pending_secret_expires = None
    app.pending_secret_error = ""
    app.secret_expired_at = None
    app.expiry_notified_days = None
    app.save(
        update_fields=[
            "client_secret",
            "secret_expires",
            "pending_secret",
            "pending_secret_expires",
            "pending_secret_error",
            "secret_expired_at",
            "expiry_notified_days",
            "updated",
        ]
    )
    # Tokens of the old secret stay valid until they expire: the next msal
    # application (``updated`` changed) may still serve them from the shared cache.


def _throwaway_client(
    app: AppRegistration, secret: str, session: _CountingSession
) -> msal.ConfidentialClientApplication:
    host = (urlsplit(app.authority).hostname or "").lower()
    return msal.ConfidentialClientApplication(
        app.client_id,
        client_credential=secret,
        authority=app.authority_url,
        token_cache=msal.SerializableTokenCache(),
        http_client=session,
        instance_discovery=None if host in MICROSOFT_AUTHORITY_HOSTS else False,
    )
