"""Who reads an EWS server, and the connections kept open for it.

A connection is an exchangelib Protocol with its TCP sessions, so that NTLM
authenticates a TCP connection once rather than on every request, and the
server version learned once is not probed again. Connections are pooled per
server, credential and configuration: a changed server row, a new secret or
another endpoint makes a new one, and the old one is closed. The number of
reads running at once against one upstream (a server with one credential) is
bounded by EWS_MAX_CONCURRENCY, shared by every calendar that reads with it.

An app registration's connection takes every token from msal (AppTokens, through
protocol.MsalCredentials): the source hands over msal's token at the start of each
fetch, and whenever exchangelib finds itself without one (after a reconnect, a
failed request, a refused or expired token) it asks msal again, never the identity
platform itself. App-only access impersonates the room (an identity on the
credentials: exchangelib's ExchangeImpersonation header); delegated access names
no identity, and the source reads the room as a delegate.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from exchangelib import (
    BASIC,
    DIGEST,
    NTLM,
    OAUTH2,
    Account,
    Configuration,
    Credentials,
    Identity,
)
from exchangelib.protocol import Protocol, close_connections
from exchangelib.transport import GSSAPI

from accounts.models import AppRegistration
from accounts.tokens import acquire_token, discard_token
from accounts.tokens import token_scope as app_token_scope
from connector.core.errors import SourceError
from connector.core.trace import Step
from connector.models import Calendar, Server
from connector.sources.ews.protocol import MsalCredentials, RefreshRetryPolicy, open_protocol
from connector.sources.ews.version import stored_version

log = logging.getLogger(__name__)

# gssnegotiate is Kerberos (SPNEGO): the service account's own ticket, obtained with its
# password (connector/sources/ews/kerberos.py), as the PHP connector's scheme of that name.
AUTH_TYPES = {"ntlm": NTLM, "basic": BASIC, "digest": DIGEST, "gssnegotiate": GSSAPI}


@dataclass(frozen=True)
class Credential:
    """Who reads: HTTP credentials (on premises) or an app registration (OAuth)."""

    oauth: bool
    username: str = ""  # HTTP: the account; OAuth: the app's client id
    password: str = field(default="", repr=False)
    app_id: int | None = None
    app_version: str = ""  # app_registration.updated: a new secret makes a new pool entry

    @property
    def fingerprint(self) -> str:
        """Stable across processes, never reveals the password."""
        if self.oauth:
            return f"app{self.app_id}"
        digest = hmac.new(
            settings.SECRET_KEY.encode(), self.password.encode(), hashlib.sha256
        ).hexdigest()[:12]
        return f"{self.username.lower()}:{digest}"

    @classmethod
    def of(cls, server: Server, calendar: Calendar | None) -> Credential:
        """The calendar's own account, else the server's app registration or service account."""
        if calendar is not None and calendar.username:
            return cls(oauth=False, username=calendar.username, password=calendar.password)
        if server.app_registration_id and server.app_registration is not None:
            app = server.app_registration
            return cls(
                oauth=True,
                username=app.client_id,
                app_id=app.pk,
                app_version=app.updated.isoformat() if app.updated else "",
            )
        if server.service_account_id and server.service_account is not None:
            account = server.service_account
            return cls(oauth=False, username=account.username, password=account.password)
        raise SourceError(
            f"The server {server} has no credentials.",
            code="no-credentials",
            hint="Choose a service account (on premises) or an app registration (Exchange "
            "Online) for this server in the admin.",
            step="connect",
        )


def token_scope(app: AppRegistration, endpoint: str) -> str:
    """The scope of an app's token for the Exchange at ``endpoint`` (any cloud).

    App-only: ``https://<host>/.default`` (full_access_as_app); delegated:
    ``https://<host>/EWS.AccessAsUser.All``.
    """
    return app_token_scope(app, f"https://{urlsplit(endpoint).netloc}", "ews")


def is_delegated(app: AppRegistration | None) -> bool:
    return app is not None and app.flow == AppRegistration.Flow.DELEGATED


@dataclass(frozen=True)
class AppTokens:
    """msal's tokens of an app registration for one Exchange: MsalCredentials' provider.

    Frozen, hence hashable: exchangelib hashes every attribute of the credentials
    (``sig()``, its cache of Protocols).
    """

    app: AppRegistration
    scope: str

    def __call__(self, refused: str) -> tuple[str, float]:
        if refused:
            discard_token(self.app, refused)
        token = acquire_token(self.app, self.scope)
        return token.token, token.expires_at.timestamp()


@dataclass
class Connection:
    config: Configuration
    protocol: Protocol
    policy: RefreshRetryPolicy
    credentials: Credentials | MsalCredentials
    accounts: dict[str, Account] = field(default_factory=dict)
    token: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


_pool: dict[tuple[Any, ...], Connection] = {}
_pool_lock = threading.Lock()
_semaphores: dict[tuple[str, int], threading.BoundedSemaphore] = {}


def reset_pool() -> None:
    """Forget every pooled connection, as a new process starts without any."""
    with _pool_lock:
        connections = list(_pool.values())
        _pool.clear()
    for connection in connections:
        _close(connection)
    close_connections()  # exchangelib's own cache of Protocols


def _close(connection: Connection) -> None:
    try:
        connection.protocol.close()
    except Exception:  # closing sockets must never break a refresh
        log.debug("Closing an EWS connection failed", exc_info=True)


def semaphore(key: str) -> threading.BoundedSemaphore:
    """The slots of one upstream (see EwsSource.upstream_key)."""
    limit = settings.EWS_MAX_CONCURRENCY
    with _pool_lock:
        slots = _semaphores.get((key, limit))
        if slots is None:
            slots = _semaphores[(key, limit)] = threading.BoundedSemaphore(limit)
        return slots


def connection(
    server: Server, credential: Credential, endpoint: str, resource: str, step: Step
) -> Connection:
    """The pooled connection to ``endpoint``, made (and the stale ones closed) if need be.

    A server not saved (the admin's "Test connection") gets a connection of its own,
    never pooled: its settings are not those of the saved row with the same id.
    """
    if server.pk is None:
        step.note(f"new connection to {endpoint} (unsaved settings, not kept)")
        return _connect(server, credential, endpoint, resource)
    prefix = (server.pk, credential.fingerprint)
    key = (
        *prefix,
        credential.app_version,
        server.updated.isoformat() if server.updated else "",
        endpoint,
    )
    with _pool_lock:
        pooled = _pool.get(key)
        if pooled is None:
            stale = [k for k in _pool if k[:2] == prefix]
            old = [_pool.pop(k) for k in stale]
            pooled = _pool[key] = _connect(server, credential, endpoint, resource)
            step.note(f"new connection to {endpoint}")
        else:
            old = []
            step.note(f"pooled connection to {endpoint}")
    for previous in old:
        _close(previous)
    return pooled


def _connect(server: Server, credential: Credential, endpoint: str, resource: str) -> Connection:
    credentials: Credentials | MsalCredentials
    if credential.oauth:
        app = server.app_registration
        assert app is not None
        # exchangelib sends an ExchangeImpersonation header for OAuth credentials with an
        # identity. App-only tokens must impersonate the room; a delegated token must not:
        # Exchange Online answers ErrorImpersonateUserDenied (the ApplicationImpersonation
        # role is retired), and the signed-in account reads the room as its delegate.
        impersonate = bool(resource) and not is_delegated(app)
        credentials = MsalCredentials(
            client_id=app.client_id,
            tenant_id=app.tenant,
            provider=AppTokens(app, token_scope(app, endpoint)),
            identity=Identity(primary_smtp_address=resource) if impersonate else None,
        )
        auth_type = OAUTH2
    else:
        credentials = Credentials(credential.username, credential.password)
        auth_type = AUTH_TYPES.get(server.http_scheme, NTLM)
    policy = RefreshRetryPolicy()
    config = Configuration(
        service_endpoint=endpoint,
        credentials=credentials,
        auth_type=auth_type,
        version=stored_version(server.ews_version),
        retry_policy=policy,
        max_connections=settings.EWS_MAX_CONCURRENCY,
    )
    protocol = open_protocol(config)
    return Connection(config=config, protocol=protocol, policy=policy, credentials=credentials)
