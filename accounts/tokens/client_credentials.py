"""The client-credentials flow: the app registration's own token, with its secret.

App-only access (``Calendars.Read`` as an application permission, or EWS's
``full_access_as_app``): msal asks for a token with the client secret alone,
and the token cache of ``clients`` makes that one request per scope and token
lifetime. A token obtained again clears an expiry that the identity platform
reported earlier (the secret was replaced).
"""

from __future__ import annotations

import logging

from accounts.models import AppRegistration
from accounts.tokens.clients import AccessToken, access_token, acquire
from accounts.tokens.errors import token_error

log = logging.getLogger(__name__)


def acquire_client_credentials(app: AppRegistration, scope: str) -> AccessToken:
    """A token of ``app`` itself for ``scope``."""
    answer = acquire(
        app,
        [scope],
        lambda client: client.msal.acquire_token_for_client(scopes=[scope]),
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
