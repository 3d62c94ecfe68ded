"""One msal application per app registration and process, its token cache shared.

One ``msal.ConfidentialClientApplication`` per app registration and process,
with msal's ``SerializableTokenCache`` persisted encrypted in
``accounts.models.TokenCache``. A token in the in-process cache is used without
touching the database; when msal would need a new one, the database copy is
loaded first, so a token that another process (web or worker) already
obtained is reused. The result: one token request per app registration and
scope per token lifetime, whatever the number of refreshes and processes.
msal renews a token 5 minutes before it expires.

Both flows (``client_credentials``, ``delegated``) get their tokens through
:func:`acquire`; msal's HTTP client counts the token requests really sent
(the ``TOKEN_REQUESTS`` metric) and bounds every call in time.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import msal
import requests
from django.conf import settings
from django.db import transaction
from msal.exceptions import MsalServiceError

from accounts.crypto import Sealed
from accounts.models import AppRegistration, TokenCache
from accounts.tokens.errors import authority_error, request_error
from connector.core import metrics
from connector.core.errors import SourceError
from connector.core.tls import trust

# Identity platform hosts msal knows; any other host (a local fake, a proxy)
# must not be checked against login.microsoftonline.com's instance discovery.
MICROSOFT_AUTHORITY_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoft.com",
        "login.windows.net",
        "sts.windows.net",
        "login.microsoftonline.us",
        "login.usgovcloudapi.net",
        "login-us.microsoftonline.com",
        "login.chinacloudapi.cn",
        "login.partner.microsoftonline.cn",
        "login.microsoftonline.de",
    }
)
# msal treats a cached token as expired this many seconds before its expiry.
MSAL_EXPIRY_MARGIN = 5 * 60


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_at: dt.datetime
    from_cache: bool

    def __repr__(self) -> str:  # never show the token itself
        return (
            f"AccessToken(expires_at={self.expires_at.isoformat()}, from_cache={self.from_cache})"
        )


def access_token(result: dict[str, Any], *, from_cache: bool) -> AccessToken:
    """The ``AccessToken`` of an msal answer that holds one."""
    # expires_in is a number, or a string of one (the v1 endpoint, AD FS); msal assumes
    # an hour less a second when it is missing, and so do we.
    try:
        lifetime = float(result.get("expires_in", 3599))
    except (TypeError, ValueError):
        lifetime = 3599.0
    expires_at = dt.datetime.fromtimestamp(time.time() + lifetime, tz=dt.UTC)
    return AccessToken(result["access_token"], expires_at.replace(microsecond=0), from_cache)


class _CountingSession(requests.Session):
    """msal's HTTP client: counts token requests really sent, bounds every call in time."""

    def __init__(self) -> None:
        super().__init__()
        self.token_posts = 0
        # The CAs of EXCHANGE_CA_BUNDLE, never REQUESTS_CA_BUNDLE (connector/core/tls.py).
        trust(self)

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs.setdefault("timeout", settings.EXCHANGE_REQUEST_TIMEOUT)
        if str(method).upper() == "POST":
            self.token_posts += 1
        return super().request(method, url, *args, **kwargs)


class Client:
    """An msal application with its token cache, as one process holds it."""

    def __init__(self, app: AppRegistration) -> None:
        self.session = _CountingSession()
        self.cache = msal.SerializableTokenCache()
        self.shared_text = ""  # the shared cache as last loaded or saved by this process
        self.lock = threading.Lock()
        host = (urlsplit(app.authority).hostname or "").lower()
        self.msal = msal.ConfidentialClientApplication(
            app.client_id,
            client_credential=app.client_secret,
            authority=app.authority_url,
            token_cache=self.cache,
            http_client=self.session,
            # Only Microsoft's hosts are known to instance discovery; asking it
            # about any other host fails (and reaches out to the internet).
            instance_discovery=None if host in MICROSOFT_AUTHORITY_HOSTS else False,
        )


_clients: dict[tuple[int, dt.datetime | None], Client] = {}
_clients_lock = threading.Lock()
# One lock per app registration for building its client: the rooms of a refresh
# round are read by several threads at once, and each would otherwise build its
# own msal application (and ask the identity platform for its configuration).
_building: dict[int, threading.Lock] = {}


def clear_clients() -> None:
    """Forget the in-process msal applications (as a new process would start)."""
    with _clients_lock:
        for client in _clients.values():
            client.session.close()
        _clients.clear()


def client_for(app: AppRegistration) -> Client:
    """This process's msal application for ``app``, built on first use."""
    key = (app.pk, app.updated)
    with _clients_lock:
        client = _clients.get(key)
        building = _building.setdefault(app.pk, threading.Lock())
    if client is not None:
        return client
    # Built outside the clients' lock (msal fetches the tenant's openid-configuration
    # here, and another app's client must not wait for it), once per app registration.
    with building:
        with _clients_lock:
            client = _clients.get(key)
        if client is not None:
            return client
        client = Client(app)
        with _clients_lock:
            # A changed registration (new secret, tenant...) gets a new application.
            for old_key in [k for k in _clients if k[0] == app.pk and k != key]:
                _clients.pop(old_key).session.close()
            return _clients.setdefault(key, client)


def _cached_token(client: Client, scopes: list[str]) -> dict[str, Any] | None:
    """A token in the in-process cache that msal would still serve, if any."""
    now = time.time()
    for entry in client.cache.search(
        msal.TokenCache.CredentialType.ACCESS_TOKEN,
        target=scopes,
        query={"client_id": client.msal.client_id, "realm": client.msal.authority.tenant},
    ):
        expires_on = int(entry["expires_on"])
        refresh_on = int(entry.get("refresh_on", expires_on))
        if expires_on - now >= MSAL_EXPIRY_MARGIN and refresh_on > now:
            return {"access_token": entry["secret"], "expires_in": expires_on - now}
    return None


def load_shared_cache(client: Client, app: AppRegistration) -> None:
    """Take the database's copy when another process changed it since we last looked."""
    data = (
        TokenCache.objects.filter(app_registration_id=app.pk).values_list("data", flat=True).first()
    )
    if isinstance(data, Sealed):
        return  # stored under another key: only a cache, rewritten with the next token
    if data and data != client.shared_text:
        client.cache.deserialize(data)
        client.shared_text = data


def save_shared_cache(client: Client, app: AppRegistration) -> None:
    """Write this process's cache to the database when msal changed it."""
    if not client.cache.has_state_changed:
        return
    text = client.cache.serialize()
    with transaction.atomic():
        TokenCache.objects.update_or_create(app_registration_id=app.pk, defaults={"data": text})
    client.shared_text = text
    client.cache.has_state_changed = False


def discard_token(app: AppRegistration, token: str) -> None:
    """Forget a token a resource refused (401), here and in the shared cache.

    The next ``acquire_token`` then asks the identity platform for a new one,
    and no other process keeps using the refused token.
    """
    try:
        client = client_for(app)
    except (ValueError, requests.RequestException, MsalServiceError):
        return  # no client, no cached token to forget
    with client.lock:
        load_shared_cache(client, app)
        for entry in list(
            client.cache.search(
                msal.TokenCache.CredentialType.ACCESS_TOKEN,
                query={"client_id": client.msal.client_id},
            )
        ):
            if entry.get("secret") == token:
                client.cache.remove_at(entry)
        save_shared_cache(client, app)


class Answer(NamedTuple):
    result: dict[str, Any]  # msal's answer, with an access token
    sent: int  # token requests really sent to the identity platform
    in_memory: bool  # served from this process's cache, without the database


def client_or_error(app: AppRegistration) -> Client:
    """``client_for``, with msal's failures as the ``SourceError`` to show."""
    try:
        return client_for(app)
    except ValueError as exc:
        raise authority_error(app, exc) from None
    except (requests.RequestException, MsalServiceError) as exc:
        raise request_error(app, exc) from None


def send(
    client: Client, app: AppRegistration, request: Callable[[], dict[str, Any]]
) -> tuple[dict[str, Any], int]:
    """Run one msal call; its answer and the token requests it really sent (counted)."""
    sent_before = client.session.token_posts
    try:
        result = request()
    except ValueError as exc:
        raise authority_error(app, exc) from None
    except (requests.RequestException, MsalServiceError) as exc:
        raise request_error(app, exc) from None
    finally:
        sent = client.session.token_posts - sent_before
        if sent:
            metrics.TOKEN_REQUESTS.labels(app_registration=app.name).inc(sent)
    return result, sent


def acquire(
    app: AppRegistration,
    scopes: list[str],
    request: Callable[[Client], dict[str, Any]],
    *,
    on_error: Callable[[dict[str, Any]], SourceError],
) -> Answer:
    """A token from this process's cache, else from the shared cache or ``request``.

    Both flows share this: under the client's lock, the in-process cache first,
    then the database's copy, then msal (which may send a token request); an
    answer without a token raises ``on_error(answer)``.
    """
    client = client_or_error(app)
    with client.lock:
        cached = _cached_token(client, scopes)
        if cached is not None:
            return Answer(cached, 0, in_memory=True)
        load_shared_cache(client, app)
        result, sent = send(client, app, lambda: request(client))
        if "access_token" not in result:
            raise on_error(result)
        save_shared_cache(client, app)
    return Answer(result, sent, in_memory=False)
