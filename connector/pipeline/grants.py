"""What a server's credential is granted: a token asked for now, and its permissions.

The Verify page and ``manage.py verify_credentials`` reach the identity
platform only through here (the services do not know tokens). The token's
claims are decoded without verifying the signature, for display only
(``accounts.tokens.roles``); the answer is plain data.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from accounts.models import GRAPH_DEFAULT_BASE_URI
from accounts.tokens import token_now
from accounts.tokens import token_scope as app_token_scope
from accounts.tokens.roles import granted, holds, needed_permissions, token_claims
from connector.models import Server

EXCHANGE_ONLINE = "https://outlook.office365.com"


@dataclass(frozen=True)
class NeededPermission:
    name: str  # Calendars.Read, full_access_as_app ...
    words: str  # "application permission of Microsoft Graph"
    fix: str  # what to do in Entra ID (or RBAC for Applications) when it is missing
    in_token: bool


@dataclass(frozen=True)
class TokenGrants:
    scope: str
    readable: bool  # the token is a JWT whose claims could be read
    granted: list[str]  # roles (app-only) and scp (delegated) of the token
    needed: list[NeededPermission]


def token_scope(server: Server) -> str:
    """The scope of the server's token: its resource's ``/.default`` (app-only), or the
    delegated permission of the server's type (a delegated sign-in)."""
    app = server.app_registration
    assert app is not None
    if server.type == Server.Type.GRAPH:
        return app_token_scope(
            app, (server.base_uri or GRAPH_DEFAULT_BASE_URI).rstrip("/"), "graph"
        )
    endpoint = urlsplit(server.base_uri or EXCHANGE_ONLINE)
    return app_token_scope(app, f"https://{endpoint.netloc}", "ews")


def grants_of(server: Server) -> TokenGrants:
    """A token of the server's app registration asked for now, and what it grants.

    Raises the ``SourceError`` of the identity platform's refusal (with its hint).
    """
    app = server.app_registration
    assert app is not None
    scope = token_scope(server)
    claims = token_claims(token_now(app, scope).token)
    names = granted(claims)
    needed = [
        NeededPermission(
            name=permission.name,
            words=f"{permission.kind} permission of {permission.api}",
            fix=permission.fix,
            in_token=holds(permission, names),
        )
        for permission in needed_permissions(str(server.type), str(app.flow))
    ]
    return TokenGrants(scope=scope, readable=claims is not None, granted=names, needed=needed)
