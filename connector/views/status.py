"""The troubleshooting page /status/: what is broken comes first.

The page polls /status/fragment/ every few seconds and swaps in the
server-rendered table (static/connector/status.js), so it stays current
without a reload.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from connector.migration_graph import retirement_notice
from connector.models import Server
from connector.roles import can_operate
from connector.status import STATUSES, calendar_rows, credential_rows, worker_state

View = Callable[..., HttpResponse]

POLL_SECONDS = 10


def operator_required(view: View) -> View:
    """Anonymous users go to the login page; logged-in users without the right get 403."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not can_operate(request.user):
            raise PermissionDenied("Only administrators and signage staff may open this page.")
        return view(request, *args, **kwargs)

    return wrapper


def page_context(request: HttpRequest, title: str) -> dict[str, Any]:
    """What admin/base_site.html expects (site header, user tools, nav sidebar)."""
    return {**admin.site.each_context(request), "title": title, "is_nav_sidebar_enabled": False}


def status_context() -> dict[str, Any]:
    now = timezone.now()
    rows = calendar_rows(now)
    counts = Counter(row.status for row in rows)
    retiring = [
        server
        for server in Server.objects.filter(type=Server.Type.EWS).order_by("server_id")
        if server.points_at_exchange_online_ews
    ]
    return {
        "now": now,
        "calendars": rows,
        "summary": [(name, counts[name]) for name in STATUSES if counts[name]],
        "worker": worker_state(now),
        "credentials": credential_rows(timezone.localdate(now)),
        "retiring_servers": retiring,
        "retirement_notice": retirement_notice(timezone.localdate(now)),
    }


@operator_required
def status_page(request: HttpRequest) -> HttpResponse:
    context = page_context(request, "Status")
    context.update(status_context())
    context["poll_seconds"] = POLL_SECONDS
    return render(request, "connector/status.html", context)


@operator_required
def status_fragment(request: HttpRequest) -> HttpResponse:
    response = render(request, "connector/status_fragment.html", status_context())
    response["Cache-Control"] = "no-store"
    return response
