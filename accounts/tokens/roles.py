"""What an access token grants: its claims, read for display only.

An access token is a JWT whose middle part holds its claims: ``roles`` (the
application permissions consented for an app-only token) or ``scp`` (the
delegated permissions). The claims are decoded **without verifying the
signature**: the token came straight from the identity platform over HTTPS,
and the result is only shown to an administrator, never used to decide access
(the resource checks the token itself). Microsoft may make tokens opaque; a
token that is not a readable JWT gives no claims, which the page says.

``needed_permissions`` says which permission each server type needs, in the
words of the Entra ID portal, with the fix when it is missing.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

GRAPH_APP = "Microsoft Graph"
EXCHANGE_APP = "Office 365 Exchange Online"


@dataclass(frozen=True)
class Permission:
    name: str  # as in the token: Calendars.Read, full_access_as_app ...
    api: str  # the API it belongs to in Entra ID's "Request API permissions"
    kind: str  # "application" or "delegated"
    rbac_role: str  # the RBAC for Applications role that grants it mailbox by mailbox
    also_ok: tuple[str, ...] = ()  # broader permissions that include it

    @property
    def fix(self) -> str:
        where = (
            "APIs my organization uses → Office 365 Exchange Online"
            if self.api == EXCHANGE_APP
            else self.api
        )
        text = (
            f"In Entra ID → App registrations → the app → API permissions → Add a permission → "
            f"{where} → {self.kind.title()} permissions → {self.name}, then "
            "'Grant admin consent'"
        )
        if self.rbac_role:
            text += (
                f"; or, scoped to the room mailboxes, assign the Exchange role "
                f'"{self.rbac_role}" (RBAC for Applications, see the PowerShell on the '
                "app registration's page)"
            )
        return text + "."


def needed_permissions(server_type: str, flow: str) -> list[Permission]:
    """The permissions the servers of ``server_type`` need from an app of ``flow``."""
    delegated = flow == "delegated"
    if server_type == "graph":
        if delegated:
            return [Permission("Calendars.Read.Shared", GRAPH_APP, "delegated", "")]
        return [
            Permission(
                "Calendars.Read",
                GRAPH_APP,
                "application",
                "Application Calendars.Read",
                also_ok=("Calendars.ReadWrite",),
            )
        ]
    if server_type == "ews":
        if delegated:
            return [Permission("EWS.AccessAsUser.All", EXCHANGE_APP, "delegated", "")]
        return [
            Permission(
                "full_access_as_app", EXCHANGE_APP, "application", "Application EWS.AccessAsApp"
            )
        ]
    return []


def token_claims(token: str) -> dict[str, Any] | None:
    """The claims of a JWT access token, signature NOT verified (display only); None: opaque."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


def granted(claims: dict[str, Any] | None) -> list[str]:
    """The permissions a token's claims name: ``roles`` (app-only) and ``scp`` (delegated)."""
    if not claims:
        return []
    found: list[str] = []
    roles = claims.get("roles")
    if isinstance(roles, list):
        found.extend(str(role) for role in roles)
    scopes = claims.get("scp")
    if isinstance(scopes, str):
        found.extend(scopes.split())
    return found


def holds(permission: Permission, names: list[str]) -> bool:
    return any(name in names for name in (permission.name, *permission.also_ok))
