"""What an Entra ID administrator needs to finish an app registration, filled in.

- the admin consent URL (``<authority>/<tenant>/adminconsent?client_id=...``),
  which grants the app's configured permissions for the whole tenant;
- the permissions each server type needs, in plain words;
- the PowerShell of RBAC for Applications in Exchange Online (Microsoft:
  https://learn.microsoft.com/exchange/permissions-exo/application-rbac) that
  grants the same permission for the room mailboxes only, and the reminder to
  remove the tenant-wide grant afterwards (the two add up: while the Entra ID
  grant exists, the app reads every mailbox). Application access policies
  (``New-ApplicationAccessPolicy``) are the legacy way to the same end.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from accounts.models import AppRegistration
from accounts.tokens.roles import Permission, needed_permissions

SCOPE_NAME = "Room mailboxes"


def consent_url(app: AppRegistration, redirect_uri: str = "") -> str:
    """The URL an administrator of the tenant opens to consent to the app's permissions."""
    query = {"client_id": app.client_id}
    if redirect_uri:
        query["redirect_uri"] = redirect_uri
    return f"{app.authority.rstrip('/')}/{app.tenant}/adminconsent?{urlencode(query)}"


@dataclass(frozen=True)
class ServerNeeds:
    server_type: str  # ews or graph
    label: str
    permissions: list[Permission]


def server_types(app: AppRegistration) -> list[str]:
    """The Exchange server types that use ``app``; both when none does yet."""
    if app.pk is None:
        return ["graph", "ews"]
    found = sorted(
        {str(t) for t in app.servers.values_list("type", flat=True)} & {"graph", "ews"}  # type: ignore[attr-defined]
    )
    return found or ["graph", "ews"]


def needs(app: AppRegistration) -> list[ServerNeeds]:
    labels = {"graph": "Microsoft Graph servers", "ews": "EWS servers (Exchange Online)"}
    return [
        ServerNeeds(kind, labels[kind], needed_permissions(kind, app.flow))
        for kind in server_types(app)
    ]


def permission_words(permission: Permission) -> str:
    """A permission in the words of the Entra ID portal."""
    return f"{permission.name} — {permission.kind} permission of {permission.api}" + (
        ", with admin consent" if permission.kind == "application" else ""
    )


def rbac_powershell(app: AppRegistration) -> str:
    """RBAC for Applications scoped to room mailboxes, with the app's ids filled in."""
    object_id = app.service_principal_id or "<Object ID from Entra ID → Enterprise applications>"
    display = f"ews-calendar {app.name}"
    roles = [
        permission.rbac_role
        for need in needs(app)
        for permission in need.permissions
        if permission.rbac_role
    ]
    lines = [
        "# Exchange Online PowerShell, as an Exchange administrator (Organization Management):",
        "Connect-ExchangeOnline",
        "",
        "# 1. A pointer to the app's service principal (the Enterprise application's Object ID)",
        f"New-ServicePrincipal -AppId {app.client_id} -ObjectId {object_id} "
        f'-DisplayName "{display}"',
        "",
        "# 2. A scope holding the room mailboxes only",
        f'New-ManagementScope -Name "{SCOPE_NAME}" '
        '-RecipientRestrictionFilter {RecipientTypeDetails -eq "RoomMailbox"}',
        "",
        "# 3. The permission, for the rooms in that scope (-App: the same Object ID)",
    ]
    for role in roles:
        lines.append(
            f'New-ManagementRoleAssignment -App {object_id} -Role "{role}" '
            f'-CustomResourceScope "{SCOPE_NAME}"'
        )
    lines += [
        "",
        "# 4. Check: a room is allowed (InScope True), an ordinary mailbox is not",
        f"Test-ServicePrincipalAuthorization -Identity {app.client_id} -Resource room@example.com",
    ]
    return "\n".join(lines)


REMOVE_TENANT_WIDE = (
    "Then remove the tenant-wide grant: in Entra ID → Enterprise applications → the app → "
    "Permissions, revoke the admin consent of Calendars.Read / full_access_as_app (or remove "
    "the permission from App registrations → API permissions). Exchange adds the two "
    "together: as long as the Entra ID grant exists, the app can read every mailbox, and "
    "the room scope limits nothing. Permissions given by RBAC for Applications are checked "
    "by Exchange and do not appear in the token's roles; Verify shows them as granted "
    "when the room can be read. Application access policies (New-ApplicationAccessPolicy) "
    "are the legacy way to restrict an app and are being replaced by RBAC for Applications."
)
