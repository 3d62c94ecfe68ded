"""OAuth2 access tokens for Exchange Online (EWS and Graph), from msal.

The sources call :func:`acquire_token` (and :func:`discard_token` for a token
a resource refused); ``accounts.views`` calls :func:`start_sign_in` and
:func:`finish_sign_in`. One token request per app registration and scope per
token lifetime, whatever the number of refreshes and processes. The modules:

- ``clients``: one msal application per app registration and process, its
  token cache shared through the database, the counted token requests;
- ``client_credentials``: the app-only flow (client secret);
- ``delegated``: a service account signs in once (authorization code with
  PKCE), then its refresh token; "re-authentication needed" when refused, with
  one mail to ADMINS per incident; ``token_scope`` is what each flow asks for;
- ``errors``: the identity platform's refusals (AADSTS codes) and network
  failures as ``SourceError`` messages and hints.
"""

from __future__ import annotations

from accounts.models import AppRegistration
from accounts.tokens.client_credentials import acquire_client_credentials, verify_token
from accounts.tokens.clients import AccessToken, clear_clients, discard_token
from accounts.tokens.delegated import (
    DELEGATED_PERMISSIONS,
    acquire_delegated,
    delegated_scope,
    finish_sign_in,
    sign_in_scope,
    start_sign_in,
    token_scope,
)
from accounts.tokens.health import record_error, record_token
from connector.core.errors import SourceError
from connector.core.trace import NullTrace, Trace

__all__ = [
    "DELEGATED_PERMISSIONS",
    "AccessToken",
    "acquire_token",
    "clear_clients",
    "delegated_scope",
    "discard_token",
    "finish_sign_in",
    "sign_in_scope",
    "start_sign_in",
    "token_now",
    "token_scope",
]


def acquire_token(app: AppRegistration, scope: str, *, trace: Trace | None = None) -> AccessToken:
    """An access token of ``app`` for ``scope`` (e.g. ``https://graph.microsoft.com/.default``)."""
    trace = trace or NullTrace()
    with trace.step("token", f"Token from {app.authority_url} for {scope}") as step:
        try:
            if app.flow == AppRegistration.Flow.DELEGATED:
                token = acquire_delegated(app, scope)
            else:
                token = acquire_client_credentials(app, scope)
        except SourceError as error:
            record_error(app, error)
            raise
        record_token(app, from_cache=token.from_cache)
        step.note(
            f"{'cached' if token.from_cache else 'new'} token, valid until "
            f"{token.expires_at:%Y-%m-%d %H:%M:%S} UTC"
        )
        step.data["from_cache"] = token.from_cache
        step.data["expires_at"] = token.expires_at.isoformat()
        return token


def token_now(app: AppRegistration, scope: str) -> AccessToken:
    """A token asked for now (Verify): app-only, past every cache; delegated, as usual.

    A pending new client secret is tried first and replaces the old one when it
    works. The outcome is recorded on the app registration's health.
    """
    try:
        if app.flow == AppRegistration.Flow.DELEGATED:
            token = acquire_delegated(app, scope)
        else:
            token = verify_token(app, scope)
    except SourceError as error:
        record_error(app, error)
        raise
    record_token(app, from_cache=token.from_cache)
    return token
