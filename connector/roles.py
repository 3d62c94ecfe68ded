"""Roles: administrators (superusers) and the "Signage staff" group.

Administrators edit everything. Signage staff look at calendars and servers,
open the status page and the test console, and trigger refreshes; credentials
(service accounts, app registrations) stay invisible to them: the group holds
no permission of the ``accounts`` app, so the admin answers 403 there.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.apps import AppConfig, apps
from django.contrib.auth.models import Group, Permission
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.http.response import HttpResponseBase

View = Callable[..., HttpResponseBase]  # a streamed answer too (the console)

SIGNAGE_STAFF = "Signage staff"

# The custom permission (Calendar.Meta.permissions) behind every operator's tool.
OPERATE_PERMISSION = "connector.refresh_calendar"

# What signage staff may do: look at calendars and servers, trigger refreshes,
# open the status page and console. Credentials stay invisible to them.
_STAFF_PERMISSIONS = [
    ("connector", "view_calendar"),
    ("connector", "view_server"),
    ("connector", "view_resource"),
    ("connector", "view_filter"),
    ("connector", "view_alarm"),
    ("connector", "refresh_calendar"),
]


def ensure_signage_staff_group() -> Group:
    group, _ = Group.objects.get_or_create(name=SIGNAGE_STAFF)
    wanted = [
        Permission.objects.get(content_type__app_label=app, codename=codename)
        for app, codename in _STAFF_PERMISSIONS
    ]
    group.permissions.add(*wanted)
    return group


def create_roles(sender: AppConfig, using: str = "default", **kwargs: Any) -> None:
    """post_migrate: keep the signage staff group and its permissions in place.

    Django creates permissions in its own post_migrate handler, which may run
    after this one; creating them here first (idempotent) removes the race.
    """
    from django.contrib.auth.management import create_permissions

    create_permissions(apps.get_app_config("connector"), verbosity=0, using=using)
    ensure_signage_staff_group()


def can_operate(user: object) -> bool:
    """May open the status page and the console, and refresh calendars.

    Superusers, and staff holding the refresh permission (the signage staff
    group gives it; an administrator may also grant it to one user).
    """
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return False
    if getattr(user, "is_superuser", False):
        return True
    return bool(getattr(user, "is_staff", False)) and user.has_perm(  # type: ignore[attr-defined]
        OPERATE_PERMISSION
    )


# Servers decide where the application connects and where credentials go.
CHANGE_SERVER_PERMISSION = "connector.change_server"


def can_point_anywhere(user: Any) -> bool:
    """May give an iCalendar calendar a resource outside its server's base URI.

    Such a resource makes this application fetch any URL (an address inside the
    network, too), which is what changing a server's base URI allows: the same
    permission. Calendar editors stay under the base URI an administrator chose.
    """
    return bool(
        getattr(user, "is_active", False)
        and getattr(user, "is_staff", False)
        and user.has_perm(CHANGE_SERVER_PERMISSION)
    )


def can_switch_to_graph(user: Any) -> bool:
    """Switching a server to Graph changes the server and picks a credential."""
    return bool(
        user.is_active
        and user.is_staff
        and user.has_perm(CHANGE_SERVER_PERMISSION)
        and user.has_perm("accounts.view_appregistration")
    )


def login_or_403(may: Callable[[Any], bool], refusal: str) -> Callable[[View], View]:
    """Anonymous users go to the login page (and come back); others without ``may`` get 403."""

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not may(request.user):
                raise PermissionDenied(refusal)
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


# The status page, the console, its refresh and 2ical.php?debug=yes.
operator_required = login_or_403(
    can_operate, "Only administrators and signage staff may open this page."
)
