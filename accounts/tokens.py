"""OAuth2 access tokens for Exchange Online (EWS and Graph), from msal.

One ``msal.ConfidentialClientApplication`` per app registration and process,
with msal's ``SerializableTokenCache`` persisted encrypted in
``accounts.models.TokenCache``. A token in the in-process cache is used without
touching the database; when msal would need a new one, the database copy is
loaded first, so a token that another process (web or worker) already
obtained is reused. The result: one token request per app registration and
scope per token lifetime, whatever the number of refreshes and processes.
msal renews a token 5 minutes before it expires.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import msal
import requests
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from msal.exceptions import MsalServiceError

from accounts.models import GRAPH_DEFAULT_BASE_URI, AppRegistration, TokenCache
from connector.core import metrics
from connector.core.errors import SourceError
from connector.core.network import network_error
from connector.core.trace import NullTrace, Trace

log = logging.getLogger(__name__)

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


class _CountingSession(requests.Session):
    """msal's HTTP client: counts token requests really sent, bounds every call in time."""

    def __init__(self) -> None:
        super().__init__()
        self.token_posts = 0

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs.setdefault("timeout", settings.EXCHANGE_REQUEST_TIMEOUT)
        if str(method).upper() == "POST":
            self.token_posts += 1
        return super().request(method, url, *args, **kwargs)


class _Client:
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


_clients: dict[tuple[int, dt.datetime | None], _Client] = {}
_clients_lock = threading.Lock()


def clear_clients() -> None:
    """Forget the in-process msal applications (as a new process would start)."""
    with _clients_lock:
        for client in _clients.values():
            client.session.close()
        _clients.clear()


def _client_for(app: AppRegistration) -> _Client:
    key = (app.pk, app.updated)
    with _clients_lock:
        client = _clients.get(key)
    if client is not None:
        return client
    # Built outside the lock: msal fetches the tenant's openid-configuration here.
    client = _Client(app)
    with _clients_lock:
        # A changed registration (new secret, tenant...) gets a new application.
        for old_key in [k for k in _clients if k[0] == app.pk and k != key]:
            _clients.pop(old_key).session.close()
        return _clients.setdefault(key, client)


def _cached_token(client: _Client, scopes: list[str]) -> dict[str, Any] | None:
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


def _load_shared_cache(client: _Client, app: AppRegistration) -> None:
    """Take the database's copy when another process changed it since we last looked."""
    data = (
        TokenCache.objects.filter(app_registration_id=app.pk).values_list("data", flat=True).first()
    )
    if data and data != client.shared_text:
        client.cache.deserialize(data)
        client.shared_text = data


def _save_shared_cache(client: _Client, app: AppRegistration) -> None:
    if not client.cache.has_state_changed:
        return
    text = client.cache.serialize()
    with transaction.atomic():
        TokenCache.objects.update_or_create(app_registration_id=app.pk, defaults={"data": text})
    client.shared_text = text
    client.cache.has_state_changed = False


def acquire_token(app: AppRegistration, scope: str, *, trace: Trace | None = None) -> AccessToken:
    """An access token of ``app`` for ``scope`` (e.g. ``https://graph.microsoft.com/.default``)."""
    trace = trace or NullTrace()
    with trace.step("token", f"Token from {app.authority_url} for {scope}") as step:
        if app.flow == AppRegistration.Flow.DELEGATED:
            token = _acquire_delegated(app, scope)
        else:
            token = _acquire_client_credentials(app, scope)
        step.note(
            f"{'cached' if token.from_cache else 'new'} token, valid until "
            f"{token.expires_at:%Y-%m-%d %H:%M:%S} UTC"
        )
        step.data["from_cache"] = token.from_cache
        step.data["expires_at"] = token.expires_at.isoformat()
        return token


def discard_token(app: AppRegistration, token: str) -> None:
    """Forget a token a resource refused (401), here and in the shared cache.

    The next ``acquire_token`` then asks the identity platform for a new one,
    and no other process keeps using the refused token.
    """
    try:
        client = _client_for(app)
    except (ValueError, requests.RequestException, MsalServiceError):
        return  # no client, no cached token to forget
    with client.lock:
        _load_shared_cache(client, app)
        for entry in list(
            client.cache.search(
                msal.TokenCache.CredentialType.ACCESS_TOKEN,
                query={"client_id": client.msal.client_id},
            )
        ):
            if entry.get("secret") == token:
                client.cache.remove_at(entry)
        _save_shared_cache(client, app)


def _acquire_client_credentials(app: AppRegistration, scope: str) -> AccessToken:
    answer = _acquire(
        app,
        [scope],
        lambda client: client.msal.acquire_token_for_client(scopes=[scope]),
        on_error=lambda result: _token_error(app, result),
    )
    if answer.in_memory:
        return _access_token(answer.result, from_cache=True)
    if answer.sent and app.secret_expired_at is not None:
        # The secret works again (it was replaced): the expiry warning is over.
        AppRegistration.objects.filter(pk=app.pk).update(secret_expired_at=None)
        app.secret_expired_at = None
    log.info(
        "token for app registration %s: %s",
        app.name,
        "new" if answer.sent else "cached (shared cache)",
    )
    return _access_token(answer.result, from_cache=not answer.sent)


class _Answer(NamedTuple):
    result: dict[str, Any]  # msal's answer, with an access token
    sent: int  # token requests really sent to the identity platform
    in_memory: bool  # served from this process's cache, without the database


def _client_or_error(app: AppRegistration) -> _Client:
    try:
        return _client_for(app)
    except ValueError as exc:
        raise _authority_error(app, exc) from None
    except (requests.RequestException, MsalServiceError) as exc:
        raise _network_error(app, exc) from None


def _send(
    client: _Client, app: AppRegistration, request: Callable[[], dict[str, Any]]
) -> tuple[dict[str, Any], int]:
    """Run one msal call; its answer and the token requests it really sent (counted)."""
    sent_before = client.session.token_posts
    try:
        result = request()
    except ValueError as exc:
        raise _authority_error(app, exc) from None
    except (requests.RequestException, MsalServiceError) as exc:
        raise _network_error(app, exc) from None
    finally:
        sent = client.session.token_posts - sent_before
        if sent:
            metrics.TOKEN_REQUESTS.labels(app_registration=app.name).inc(sent)
    return result, sent


def _acquire(
    app: AppRegistration,
    scopes: list[str],
    request: Callable[[_Client], dict[str, Any]],
    *,
    on_error: Callable[[dict[str, Any]], SourceError],
) -> _Answer:
    """A token from this process's cache, else from the shared cache or ``request``.

    Both flows share this: under the client's lock, the in-process cache first,
    then the database's copy, then msal (which may send a token request); an
    answer without a token raises ``on_error(answer)``.
    """
    client = _client_or_error(app)
    with client.lock:
        cached = _cached_token(client, scopes)
        if cached is not None:
            return _Answer(cached, 0, in_memory=True)
        _load_shared_cache(client, app)
        result, sent = _send(client, app, lambda: request(client))
        if "access_token" not in result:
            raise on_error(result)
        _save_shared_cache(client, app)
    return _Answer(result, sent, in_memory=False)


# -- delegated flow: a service account signs in once ----------------------------------


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
        client = _client_for(app)
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
        raise _authority_error(app, exc) from None
    except (requests.RequestException, MsalServiceError) as exc:
        raise _network_error(app, exc) from None


def finish_sign_in(app: AppRegistration, flow: dict[str, Any], answer: dict[str, str]) -> str:
    """Redeem the code the identity platform sent back; returns the account signed in."""
    if answer.get("error"):
        message, hint, _ = _hint(_aadsts_code(answer), app)
        raise SourceError(
            message or f"The sign-in did not complete ({answer.get('error')}).",
            code=str(answer.get("error")),
            hint=hint or _first_sentence_block(str(answer.get("error_description") or "")),
            step="token",
        )
    client = _client_or_error(app)

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
        _load_shared_cache(client, app)
        result, _ = _send(client, app, redeem)
        if "access_token" not in result:
            raise _token_error(app, result)
        account = str(result.get("id_token_claims", {}).get("preferred_username") or "")
        if app.account and account and account.lower() != app.account.lower():
            raise SourceError(
                f"Signed in as {account}, but this app registration is for {app.account}.",
                code="wrong-account",
                hint="Sign in with the service account named on the app registration (sign "
                "out of Microsoft in this browser first), or change the account there.",
                step="token",
            )
        _save_shared_cache(client, app)
    _store_refresh_token(app, str(result.get("refresh_token") or ""), account=account)
    log.info("app registration %s: signed in as %s", app.name, account)
    return account


def _acquire_delegated(app: AppRegistration, scope: str) -> AccessToken:
    if not app.refresh_token:
        raise _reauth_error(app, "nobody has signed in yet")

    def redeem(client: _Client) -> dict[str, Any]:
        accounts = client.msal.get_accounts(username=app.account or None)
        result = None
        if accounts:
            result = client.msal.acquire_token_silent_with_error([scope], account=accounts[0])
        if result is None:
            # No usable account in the cache: the stored refresh token starts over.
            result = client.msal.acquire_token_by_refresh_token(app.refresh_token, [scope])
        return result

    answer = _acquire(app, [scope], redeem, on_error=lambda result: _delegated_error(app, result))
    if answer.in_memory:
        return _access_token(answer.result, from_cache=True)
    result = answer.result
    if result.get("refresh_token") and result["refresh_token"] != app.refresh_token:
        _store_refresh_token(app, str(result["refresh_token"]), account=app.account)
    elif app.reauth_needed:
        AppRegistration.objects.filter(pk=app.pk).update(reauth_needed=False)
        app.reauth_needed = False
    return _access_token(result, from_cache=not answer.sent)


def _delegated_error(app: AppRegistration, result: dict[str, Any]) -> SourceError:
    """A refused refresh token means the service account must sign in again."""
    code = _aadsts_code(result)
    if result.get("error") in ("invalid_grant", "interaction_required") or code in (
        50076,
        50079,
        50173,
        65001,
        700082,
        700084,
    ):
        _mark_reauth_needed(app)
        description = _first_sentence_block(str(result.get("error_description") or ""))
        return _reauth_error(app, description or str(result.get("error")))
    return _token_error(app, result)


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


def _aadsts_code(result: dict[str, Any]) -> int:
    """The AADSTS number: error_codes (numbers, or strings of them) or the description's."""
    codes = result.get("error_codes") or []
    for code in codes if isinstance(codes, list) else [codes]:
        match = re.fullmatch(r"\s*(?:AADSTS)?(\d+)\s*", str(code))
        if match:
            return int(match.group(1))
    match = _AADSTS.search(str(result.get("error_description") or ""))
    return int(match.group(1)) if match else 0


def _access_token(result: dict[str, Any], *, from_cache: bool) -> AccessToken:
    # expires_in is a number, or a string of one (the v1 endpoint, AD FS); msal assumes
    # an hour less a second when it is missing, and so do we.
    try:
        lifetime = float(result.get("expires_in", 3599))
    except (TypeError, ValueError):
        lifetime = 3599.0
    expires_at = dt.datetime.fromtimestamp(time.time() + lifetime, tz=dt.UTC)
    return AccessToken(result["access_token"], expires_at.replace(microsecond=0), from_cache)


# -- errors ------------------------------------------------------------------------------

_AADSTS = re.compile(r"AADSTS(\d+)")


def _first_sentence_block(description: str) -> str:
    """The error description without Entra's trace/correlation/timestamp tail."""
    for marker in ("\r\nTrace ID:", "\nTrace ID:", " Trace ID:"):
        if marker in description:
            description = description.split(marker, 1)[0]
    return description.strip()


def _hint(code: int, app: AppRegistration) -> tuple[str, str, bool]:
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


def _token_error(app: AppRegistration, result: dict[str, Any]) -> SourceError:
    description = str(result.get("error_description") or "")
    code = _aadsts_code(result)
    message, hint, retryable = _hint(code, app)
    if code == 7000222:
        _mark_expired(app)
    if not message:
        error = str(result.get("error") or "error")
        message = (
            f"The identity platform refused a token ({error}): "
            f"{_first_sentence_block(description) or 'no description'}"
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
    )


def _authority_error(app: AppRegistration, exc: ValueError) -> SourceError:
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
        message, hint, retryable = _hint(int(match.group(1)), app)
        if message:
            return SourceError(message, code=f"AADSTS{match.group(1)}", hint=hint, step="token")
    return SourceError(
        f"The identity platform at {app.authority} could not be used for tenant {app.tenant}.",
        code="authority",
        hint="Check the authority (https://login.microsoftonline.com, or a national cloud's "
        "host) and the tenant id or domain of the app registration.",
        step="token",
    )


def _network_error(app: AppRegistration, exc: Exception) -> SourceError:
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
    )


def _mark_expired(app: AppRegistration) -> None:
    now = timezone.now()
    AppRegistration.objects.filter(pk=app.pk).update(secret_expired_at=now)
    app.secret_expired_at = now
