"""Roles: administrators (superusers) and the "Signage staff" group."""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission

SIGNAGE_STAFF = "Signage staff"

# What signage staff may do: look at calendars and servers, trigger refreshes,
# open the status page and console. Credentials stay invisible to them.
_STAFF_PERMISSIONS = [
    ("connector", "view_calendar"),
    ("connector", "view_server"),
    ("connector", "view_resource"),
    ("connector", "view_filter"),
    ("connector", "view_alarm"),
]


def ensure_signage_staff_group() -> Group:
    group, _ = Group.objects.get_or_create(name=SIGNAGE_STAFF)
    wanted = [
        Permission.objects.get(content_type__app_label=app, codename=codename)
        for app, codename in _STAFF_PERMISSIONS
    ]
    group.permissions.add(*wanted)
    return group


def is_signage_staff(user: object) -> bool:
    """Administrators and members of the signage staff group."""
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return False
    if getattr(user, "is_superuser", False):
        return True
    return (
        bool(getattr(user, "is_staff", False))
        and user.groups.filter(  # type: ignore[attr-defined]
            name=SIGNAGE_STAFF
        ).exists()
    )
