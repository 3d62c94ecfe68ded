"""A fake of the Microsoft identity platform (Entra ID) that unmodified msal talks to.

Serves, per tenant (by domain or by GUID):

- ``/{tenant}/v2.0/.well-known/openid-configuration`` (400 with AADSTS90002 for an
  unknown tenant, as login.microsoftonline.com answers);
- ``/{tenant}/oauth2/v2.0/token`` for the client_credentials grant, and the
  authorization_code and refresh_token grants of the delegated flow;
- ``/{tenant}/oauth2/v2.0/authorize``: a login form (account and password of a
  user added with ``add_user``) that a browser, or ``sign_in_form`` for tests
  without one, fills in; a right password redirects back to ``redirect_uri``
  with a code bound to the PKCE challenge, a wrong one shows the form again.

Delegated tokens carry the permissions (``scp``) asked for, if the app has them:
``consent`` records an administrator's consent (Entra ID → API permissions →
Grant admin consent), and signing in consents to what the sign-in asks for.
A token request for a permission nobody consented to, or for a refresh token
that was revoked (``revoke_sign_in``: an administrator's "Revoke sessions" or a
password change) or expired, is refused as Entra ID refuses it: ``invalid_grant``
with AADSTS65001, AADSTS50173 or AADSTS700082 (learn.microsoft.com/entra/
identity-platform/reference-error-codes). Revoking the sessions also ends the
account's access tokens, as Exchange Online and Graph do with continuous access
evaluation.

Errors carry the bodies Entra ID sends: ``error``, ``error_description`` starting
with ``AADSTSnnnn: ``, ``error_codes``, ``timestamp``, ``trace_id``,
``correlation_id``. Tokens are random strings the EWS and Graph fakes check
through ``is_valid_token`` and ``token_info``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from tests.fakes.base import FakeHTTPServer, Request, Response

JSON = "application/json; charset=utf-8"


@dataclass
class FakeApp:
    tenant_id: str
    client_id: str
    secret: str
    expired: bool = False
    display_name: str = "ews-calendar signage"
    # Application permissions granted with admin consent: the ``roles`` claim of its
    # app-only tokens (Entra ID puts each consented app role of the resource there).
    roles: list[str] = field(default_factory=list)
    # Entra ID keeps several client secrets per app, each valid until it expires or is
    # deleted: a new secret works while the old one still does (rotation).
    other_secrets: list[str] = field(default_factory=list)
    # Delegated permissions consented to, as full scopes
    # ("https://graph.microsoft.com/Calendars.Read.Shared").
    consented: set[str] = field(default_factory=set)

    def accepts(self, secret: str) -> bool:
        return any(
            secrets.compare_digest(secret.encode(), known.encode())
            for known in (self.secret, *self.other_secrets)
        )


@dataclass
class FakeTenant:
    domain: str
    tenant_id: str
    display_name: str
    users: dict[str, str] = field(default_factory=dict)  # account -> password (delegated)
    other_domains: set[str] = field(default_factory=set)  # verified custom domains


@dataclass
class IssuedToken:
    token: str
    tenant_id: str
    client_id: str
    audience: str  # the resource of the scope, e.g. https://graph.microsoft.com
    expires: float  # time.time() seconds
    account: str = ""  # delegated tokens: the signed-in user
    scopes: frozenset[str] = frozenset()  # delegated tokens: the permissions (scp)


class FakeIdentityPlatform(FakeHTTPServer):
    """Entra ID's v2.0 endpoints for a few tenants and app registrations."""

    def __init__(self, *, expires_in: int = 3599) -> None:
        super().__init__(tls=True)
        self.expires_in = expires_in
        # The v1 endpoint and AD FS send the numbers of a token answer as strings.
        self.numbers_as_strings = False
        # Entra ID's error_codes list; False: left out, as some answers (and AD FS) do.
        self.send_error_codes = True
        self.tenants: dict[str, FakeTenant] = {}  # by tenant id (GUID)
        self.apps: list[FakeApp] = []
        self.tokens: dict[str, IssuedToken] = {}
        self.refresh_tokens: dict[str, tuple[str, str, str]] = {}  # rt -> tenant, client, account
        self.revoked_refresh_tokens: set[str] = set()  # "Revoke sessions", password changed
        self.codes: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    # -- set-up ---------------------------------------------------------------------
    def add_tenant(self, domain: str, *, display_name: str = "") -> FakeTenant:
        existing = self.find_tenant(domain)
        if existing is not None:
            return existing
        tenant_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, domain))
        tenant = FakeTenant(domain, tenant_id, display_name or domain.split(".")[0].title())
        self.tenants[tenant_id] = tenant
        return tenant

    def add_app(
        self,
        tenant: str,
        client_id: str,
        secret: str,
        expired: bool = False,
        *,
        roles: list[str] | None = None,
    ) -> FakeApp:
        fake_tenant = self.add_tenant(tenant)
        app = FakeApp(fake_tenant.tenant_id, client_id, secret, expired=expired)
        app.roles = list(roles or [])
        self.apps.append(app)
        return app

    def add_user(self, tenant: str, account: str, password: str = "fake-password-user") -> None:
        self.add_tenant(tenant).users[account.lower()] = password

    def consent(self, client_id: str, *scopes: str) -> None:
        """An administrator grants (admin consent) these delegated permissions to the app."""
        for app in self.apps:
            if app.client_id == client_id:
                app.consented.update(scopes)

    def withdraw_consent(self, client_id: str) -> None:
        """The permissions are removed from the app (AADSTS65001 from then on)."""
        for app in self.apps:
            if app.client_id == client_id:
                app.consented.clear()

    def revoke_sign_in(self, account: str) -> None:
        """Revoke-MgUserSignInSession (or a password change) for ``account``.

        Its refresh tokens answer AADSTS50173 from now on, and its access tokens
        stop working at once (resources that evaluate access continuously).
        """
        account = account.lower()
        with self._lock:
            for refresh, held in list(self.refresh_tokens.items()):
                if held[2] == account:
                    del self.refresh_tokens[refresh]
                    self.revoked_refresh_tokens.add(refresh)
            for token, issued in list(self.tokens.items()):
                if issued.account == account:
                    del self.tokens[token]

    def set_roles(self, client_id: str, roles: list[str]) -> None:
        """The application permissions consented for the app: its tokens' ``roles`` claim."""
        for app in self.apps:
            if app.client_id == client_id:
                app.roles = list(roles)

    def set_secret(self, client_id: str, secret: str) -> None:
        """The app's (only) valid client secret becomes ``secret``, not expired."""
        for app in self.apps:
            if app.client_id == client_id:
                app.secret, app.expired = secret, False

    def add_secret(self, client_id: str, secret: str) -> None:
        """A second client secret for the app (Certificates & secrets → New client secret)."""
        for app in self.apps:
            if app.client_id == client_id:
                app.other_secrets.append(secret)

    def expire_secret(self, client_id: str) -> None:
        for app in self.apps:
            if app.client_id == client_id:
                app.expired = True

    def revoke_tokens(self) -> None:
        """Forget every access token issued (a resource then answers 401)."""
        with self._lock:
            self.tokens.clear()

    def revoke_refresh_tokens(self) -> None:
        with self._lock:
            self.refresh_tokens.clear()

    def find_tenant(self, name: str) -> FakeTenant | None:
        lowered = name.lower()
        for tenant in self.tenants.values():
            if lowered in (tenant.tenant_id, tenant.domain.lower(), *tenant.other_domains):
                return tenant
        return None

    def add_domain(self, tenant: str, domain: str) -> None:
        """A custom domain verified in the tenant (Entra ID → Custom domain names).

        login.microsoftonline.com serves a tenant's OpenID configuration under each
        of its verified domains as under its GUID, and answers 400 AADSTS90002 for
        a domain no tenant holds (Microsoft identity platform error codes:
        https://learn.microsoft.com/entra/identity-platform/reference-error-codes).
        """
        self.add_tenant(tenant).other_domains.add(domain.lower())

    # -- what resources ask -----------------------------------------------------------
    def token_info(self, token: str) -> IssuedToken | None:
        with self._lock:
            issued = self.tokens.get(token)
        if issued is None or issued.expires <= time.time():
            return None
        return issued

    def is_valid_token(self, token: str, audience: str | None = None) -> bool:
        issued = self.token_info(token)
        if issued is None:
            return False
        return audience is None or issued.audience.rstrip("/") == audience.rstrip("/")

    def token_requests(self, grant_type: str | None = None) -> int:
        def is_token_request(request: Request) -> bool:
            if not request.path.endswith("/oauth2/v2.0/token"):
                return False
            if grant_type is None:
                return True
            return parse_qs(request.body.decode()).get("grant_type", [""])[0] == grant_type

        return self.count(is_token_request)

    # -- protocol ---------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        parts = request.path.strip("/").split("/")
        if len(parts) < 2:
            return Response(404, "not found")
        tenant_name, rest = parts[0], "/".join(parts[1:])
        tenant = self.find_tenant(tenant_name)
        if tenant is None:
            return self._error(
                400,
                "invalid_tenant",
                90002,
                f"Tenant '{tenant_name}' not found. Check to make sure you have the correct "
                "tenant ID and are signing into the correct cloud. Check with your "
                "subscription administrator, this may happen if there are no active "
                "subscriptions for the tenant.",
            )
        if rest == "v2.0/.well-known/openid-configuration" and request.method == "GET":
            return self._openid_configuration(tenant)
        if rest == "oauth2/v2.0/token" and request.method == "POST":
            return self._token(tenant, request)
        if rest == "oauth2/v2.0/authorize" and request.method == "GET":
            return self._login_form(tenant, _query(request), error="")
        if rest == "oauth2/v2.0/authorize" and request.method == "POST":
            return self._authorize(tenant, request)
        return Response(404, "not found")

    def _openid_configuration(self, tenant: FakeTenant) -> Response:
        base = f"{self.url}/{tenant.tenant_id}"
        config = {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{self.url}/{tenant.tenant_id}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{self.url}/{tenant.tenant_id}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "tid", "oid"],
            "kerberos_endpoint": f"{base}/kerberos",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }
        return Response(200, json.dumps(config), content_type=JSON)

    def _token(self, tenant: FakeTenant, request: Request) -> Response:
        form = {key: values[0] for key, values in parse_qs(request.body.decode()).items()}
        grant = form.get("grant_type", "")
        client_id = form.get("client_id", "")
        secret = form.get("client_secret", "")
        if not secret and request.header("authorization").lower().startswith("basic "):
            decoded = base64.b64decode(request.header("authorization")[6:]).decode()
            client_id, _, secret = decoded.partition(":")
        app = next(
            (a for a in self.apps if a.tenant_id == tenant.tenant_id and a.client_id == client_id),
            None,
        )
        if app is None:
            return self._error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{tenant.display_name}'. This can happen if the application has not been "
                "installed by the administrator of the tenant or consented to by any user in "
                "the tenant. You may have sent your authentication request to the wrong tenant.",
            )
        if not app.accepts(secret):
            return self._error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request "
                "is the client secret value, not the client secret ID, for a secret added to "
                f"app '{app.client_id}'.",
            )
        if app.expired:
            return self._error(
                401,
                "invalid_client",
                7000222,
                f"The provided client secret keys for app '{app.client_id}' are expired. "
                "Visit the Azure portal to create new keys for your app: "
                "https://aka.ms/NewClientSecret, or consider using certificate credentials "
                "for added security: https://aka.ms/certCreds.",
            )
        scope = form.get("scope", "")
        resource_scopes = [
            s for s in scope.split() if s not in ("openid", "profile", "offline_access")
        ]
        if grant == "client_credentials":
            if len(resource_scopes) != 1 or not resource_scopes[0].endswith("/.default"):
                return self._error(
                    400,
                    "invalid_scope",
                    1002012,
                    f"The provided value for scope {scope} is not valid. Client credential "
                    "flows must have a scope value with /.default suffixed to the resource "
                    "identifier (application ID URI).",
                )
            return self._issue(tenant, app, resource_scopes[0], account="")
        if grant == "authorization_code":
            code = self.codes.pop(form.get("code", ""), None)
            if code is None or code["client_id"] != client_id:
                return self._error(
                    400,
                    "invalid_grant",
                    70000,
                    "The provided authorization code or refresh token has expired due to "
                    "inactivity. Send a new interactive authorization request for this user "
                    "and resource.",
                )
            verifier = form.get("code_verifier", "")
            challenge = (
                base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
                .rstrip(b"=")
                .decode()
            )
            if challenge != code["code_challenge"]:
                return self._error(
                    400,
                    "invalid_grant",
                    501481,
                    "The Code_Verifier does not match the code_challenge supplied in the "
                    "authorization request.",
                )
            refused = self._not_consented(app, tenant, resource_scopes)
            if refused is not None:
                return refused
            return self._issue(
                tenant,
                app,
                _resource_scope(resource_scopes),
                account=code["account"],
                nonce=code["nonce"],
            )
        if grant == "refresh_token":
            refresh = form.get("refresh_token", "")
            with self._lock:
                held = self.refresh_tokens.get(refresh)
                revoked = refresh in self.revoked_refresh_tokens
            if revoked:
                return self._error(
                    400,
                    "invalid_grant",
                    50173,
                    "The provided grant has expired due to it being revoked, a fresh auth "
                    "token is needed. The user might have changed or reset their password. "
                    "The grant was issued on '2026-01-01T00:00:00.0000000Z' and the "
                    "TokensValidFrom date (before which tokens are not valid) for this user is "
                    "'2026-01-02T00:00:00.0000000Z'.",
                )
            if held is None or held[:2] != (tenant.tenant_id, client_id):
                return self._error(
                    400,
                    "invalid_grant",
                    700082,
                    "The refresh token has expired due to inactivity. The token was issued "
                    "on 2026-01-01T00:00:00.0000000Z and was inactive for 90.00:00:00.",
                )
            refused = self._not_consented(app, tenant, resource_scopes)
            if refused is not None:
                return refused
            return self._issue(tenant, app, _resource_scope(resource_scopes), account=held[2])
        return self._error(
            400,
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type '{grant}'.",
        )

    def _login_form(self, tenant: FakeTenant, query: dict[str, str], *, error: str) -> Response:
        """Entra ID's sign-in page, reduced to its form: account, password, "Sign in"."""
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
            for name, value in query.items()
            if name not in ("login", "passwd")
        )
        account = html.escape(query.get("login") or query.get("login_hint", ""))
        page = (
            "<!doctype html><html><head><title>Sign in to your account</title></head><body>"
            f"<h1>Sign in to {html.escape(tenant.display_name)}</h1>"
            + (f'<p id="error" role="alert">{html.escape(error)}</p>' if error else "")
            + f'<form method="post" action="{self.url}/{tenant.tenant_id}/oauth2/v2.0/authorize">'
            f"{hidden}"
            f'<label>Account <input id="i0116" name="login" type="email" value="{account}"></label>'
            '<label>Password <input id="i0118" name="passwd" type="password"></label>'
            '<input id="idSIButton9" type="submit" value="Sign in">'
            "</form></body></html>"
        )
        return Response(200, page, content_type="text/html; charset=utf-8")

    def _authorize(self, tenant: FakeTenant, request: Request) -> Response:
        """The login form posted: a right password redirects back with a code."""
        form = {key: values[0] for key, values in parse_qs(request.body.decode()).items()}
        account = form.get("login", "").strip().lower()
        password = tenant.users.get(account)
        if password is None:
            return self._login_form(
                tenant,
                form,
                error=f"AADSTS50034: The user account {account or '(none)'} does not exist in "
                f"the {tenant.domain} directory.",
            )
        if not secrets.compare_digest(password.encode(), form.get("passwd", "").encode()):
            return self._login_form(
                tenant,
                form,
                error="AADSTS50126: Error validating credentials due to invalid "
                "username or password.",
            )
        if form.get("code_challenge_method") != "S256" or not form.get("code_challenge"):
            return Response(400, "AADSTS501491: PKCE with S256 is required for this client.")
        # The user accepts the consent prompt for what the sign-in asks.
        scopes = [s for s in form.get("scope", "").split() if "/" in s]
        for app in self.apps:
            if app.client_id == form.get("client_id") and app.tenant_id == tenant.tenant_id:
                app.consented.update(scopes)
        code = secrets.token_urlsafe(24)
        self.codes[code] = {
            "client_id": form.get("client_id", ""),
            "code_challenge": form.get("code_challenge", ""),
            "account": account,
            "nonce": form.get("nonce", ""),
        }
        query = urlencode({"code": code, "state": form.get("state", "")})
        return Response(302, "", headers={"Location": f"{form.get('redirect_uri', '')}?{query}"})

    def sign_in_form(self, auth_uri: str, account: str, password: str) -> str:
        """What a browser does at ``auth_uri``: fill in the form, post it; the redirect."""
        session = requests.Session()
        form_page = session.get(auth_uri, timeout=10)
        form_page.raise_for_status()
        query = {key: values[0] for key, values in parse_qs(urlsplit(auth_uri).query).items()}
        answer = session.post(
            auth_uri.split("?", 1)[0],
            data={**query, "login": account, "passwd": password},
            allow_redirects=False,
            timeout=10,
        )
        if answer.status_code != 302:
            raise AssertionError(f"the sign-in failed: {answer.status_code} {answer.text[:300]}")
        return str(answer.headers["Location"])

    def _not_consented(
        self, app: FakeApp, tenant: FakeTenant, scopes: list[str]
    ) -> Response | None:
        """AADSTS65001 for a delegated permission neither the user nor an admin consented to."""
        missing = [s for s in scopes if not s.endswith("/.default") and s not in app.consented]
        if not missing:
            return None
        return self._error(
            400,
            "invalid_grant",
            65001,
            f"The user or administrator has not consented to use the application with ID "
            f"'{app.client_id}' named '{app.display_name}'. Send an interactive authorization "
            "request for this user and resource.",
        )

    def _issue(
        self, tenant: FakeTenant, app: FakeApp, scope: str, *, account: str, nonce: str = ""
    ) -> Response:
        audience, _, permission = scope.rpartition("/")
        if account:
            # A delegated token holds what was asked; .default: all that was consented to.
            if permission == ".default":
                granted = {s for s in app.consented if s.rpartition("/")[0] == audience}
            else:
                granted = {scope}
            scopes = frozenset(s.rpartition("/")[2] for s in granted)
        else:
            scopes = frozenset()
        token = _access_token(self, tenant, app, audience, account, scopes)
        issued = IssuedToken(
            token=token,
            tenant_id=tenant.tenant_id,
            client_id=app.client_id,
            audience=audience,
            expires=time.time() + self.expires_in,
            account=account,
            scopes=scopes,
        )
        with self._lock:
            self.tokens[token] = issued
        body: dict[str, object] = {
            "token_type": "Bearer",
            "scope": scope,
            "expires_in": str(self.expires_in) if self.numbers_as_strings else self.expires_in,
            "ext_expires_in": (
                str(self.expires_in) if self.numbers_as_strings else self.expires_in
            ),
            "access_token": token,
        }
        if account:
            refresh = "fake-refresh-" + secrets.token_urlsafe(32)
            with self._lock:
                self.refresh_tokens[refresh] = (tenant.tenant_id, app.client_id, account)
            body["refresh_token"] = refresh
            body["id_token"] = _id_token(tenant, app, account, nonce)
            body["client_info"] = _b64(
                {"uid": str(uuid.uuid5(uuid.NAMESPACE_URL, account)), "utid": tenant.tenant_id}
            )
        return Response(200, json.dumps(body), content_type=JSON)

    def _error(self, status: int, error: str, code: int, description: str) -> Response:
        trace_id = str(uuid.uuid4())
        correlation_id = str(uuid.uuid4())
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        body = {
            "error": error,
            # Entra ID ends the description with lines of its own, CRLF-separated.
            "error_description": f"AADSTS{code}: {description}\r\nTrace ID: {trace_id}\r\n"
            f"Correlation ID: {correlation_id}\r\nTimestamp: {stamp}",
            "error_codes": [code],
            "timestamp": stamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"{self.url}/error?code={code}",
        }
        if not self.send_error_codes:
            del body["error_codes"]
        return Response(status, json.dumps(body), content_type=JSON)


def _query(request: Request) -> dict[str, str]:
    return {key: values[0] for key, values in request.query.items() if values}


def _resource_scope(scopes: list[str]) -> str:
    return scopes[0] if scopes else "https://graph.microsoft.com/.default"


def _b64(payload: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()


def _id_token(tenant: FakeTenant, app: FakeApp, account: str, nonce: str) -> str:
    """An unsigned id token: msal reads its claims to name the account, never verifies it."""
    now = int(time.time())
    claims = {
        "aud": app.client_id,
        "iss": f"https://login.microsoftonline.com/{tenant.tenant_id}/v2.0",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "name": account.split("@")[0],
        "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, account)),
        "preferred_username": account,
        "sub": secrets.token_urlsafe(16),
        "tid": tenant.tenant_id,
        "ver": "2.0",
    }
    if nonce:
        claims["nonce"] = nonce
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."


def _access_token(
    identity: FakeIdentityPlatform,
    tenant: FakeTenant,
    app: FakeApp,
    audience: str,
    account: str,
    scopes: frozenset[str] = frozenset(),
) -> str:
    """A JWT-shaped access token, as Entra ID issues for Graph and Exchange Online.

    Its claims are the ones an administrator reads (https://learn.microsoft.com/
    entra/identity-platform/access-token-claims-reference): ``aud``, ``iss``,
    ``tid``, ``appid``, ``exp``, and ``roles`` (the application permissions
    consented, app-only tokens) or ``scp`` (delegated). The signature is random
    bytes: resources here check the token by looking it up, and clients must
    never rely on reading it (Microsoft: access tokens are opaque to clients).
    """
    now = int(time.time())
    claims: dict[str, object] = {
        "aud": audience,
        "iss": f"https://sts.windows.net/{tenant.tenant_id}/",
        "iat": now,
        "nbf": now,
        "exp": now + identity.expires_in,
        "appid": app.client_id,
        "app_displayname": app.display_name,
        "tid": tenant.tenant_id,
        "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, account or app.client_id)),
        "uti": secrets.token_urlsafe(16),
        "ver": "1.0",
    }
    if account:
        claims["upn"] = account
        claims["scp"] = " ".join(sorted(scopes))
    elif app.roles:
        claims["roles"] = list(app.roles)
    header = {"typ": "JWT", "alg": "RS256", "kid": "fake-key"}
    signature = base64.urlsafe_b64encode(secrets.token_bytes(64)).rstrip(b"=").decode()
    return f"{_b64(header)}.{_b64(claims)}.{signature}"
