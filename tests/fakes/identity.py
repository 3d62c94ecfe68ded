"""A fake of the Microsoft identity platform (Entra ID) that unmodified msal talks to.

Serves, per tenant (by domain or by GUID):

- ``/{tenant}/v2.0/.well-known/openid-configuration`` (400 with AADSTS90002 for an
  unknown tenant, as login.microsoftonline.com answers);
- ``/{tenant}/oauth2/v2.0/token`` for the client_credentials grant, and the
  authorization_code and refresh_token grants of the delegated flow;
- ``/{tenant}/oauth2/v2.0/authorize``, which "signs in" the tenant's service
  account at once and redirects back with a code (no login page: the browser
  part of the flow is not what is tested here).

Errors carry the bodies Entra ID sends: ``error``, ``error_description`` starting
with ``AADSTSnnnn: ``, ``error_codes``, ``timestamp``, ``trace_id``,
``correlation_id``. Tokens are random strings the EWS and Graph fakes check
through ``is_valid_token``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlencode

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
    users: set[str] = field(default_factory=set)  # accounts that may sign in (delegated)
    other_domains: set[str] = field(default_factory=set)  # verified custom domains


@dataclass
class IssuedToken:
    token: str
    tenant_id: str
    client_id: str
    audience: str  # the resource of the scope, e.g. https://graph.microsoft.com
    expires: float  # time.time() seconds
    account: str = ""  # delegated tokens: the signed-in user


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

    def add_user(self, tenant: str, account: str) -> None:
        self.add_tenant(tenant).users.add(account.lower())

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
            return self._issue(
                tenant,
                app,
                _resource_scope(resource_scopes),
                account=code["account"],
                nonce=code["nonce"],
            )
        if grant == "refresh_token":
            with self._lock:
                held = self.refresh_tokens.get(form.get("refresh_token", ""))
            if held is None or held[:2] != (tenant.tenant_id, client_id):
                return self._error(
                    400,
                    "invalid_grant",
                    700082,
                    "The refresh token has expired due to inactivity. The token was issued "
                    "on 2026-01-01T00:00:00.0000000Z and was inactive for 90.00:00:00.",
                )
            return self._issue(tenant, app, _resource_scope(resource_scopes), account=held[2])
        return self._error(
            400,
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type '{grant}'.",
        )

    def _authorize(self, tenant: FakeTenant, request: Request) -> Response:
        """Sign in the tenant's (only) user at once and redirect back with a code."""
        redirect_uri = request.arg("redirect_uri")
        account = request.arg("login_hint") or next(iter(sorted(tenant.users)), "")
        if account.lower() not in tenant.users:
            return Response(400, f"AADSTS50034: The user account {account} does not exist.")
        code = secrets.token_urlsafe(24)
        self.codes[code] = {
            "client_id": request.arg("client_id"),
            "code_challenge": request.arg("code_challenge"),
            "account": account.lower(),
            "nonce": request.arg("nonce"),
        }
        query = urlencode({"code": code, "state": request.arg("state")})
        return Response(302, "", headers={"Location": f"{redirect_uri}?{query}"})

    def _issue(
        self, tenant: FakeTenant, app: FakeApp, scope: str, *, account: str, nonce: str = ""
    ) -> Response:
        audience = scope.removesuffix("/.default") if scope.endswith("/.default") else scope
        token = _access_token(self, tenant, app, audience, account)
        issued = IssuedToken(
            token=token,
            tenant_id=tenant.tenant_id,
            client_id=app.client_id,
            audience=audience,
            expires=time.time() + self.expires_in,
            account=account,
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
    identity: FakeIdentityPlatform, tenant: FakeTenant, app: FakeApp, audience: str, account: str
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
        claims["scp"] = "Calendars.Read.Shared EWS.AccessAsUser.All"
    elif app.roles:
        claims["roles"] = list(app.roles)
    header = {"typ": "JWT", "alg": "RS256", "kid": "fake-key"}
    signature = base64.urlsafe_b64encode(secrets.token_bytes(64)).rstrip(b"=").decode()
    return f"{_b64(header)}.{_b64(claims)}.{signature}"
