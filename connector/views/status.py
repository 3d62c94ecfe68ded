"""The troubleshooting page /status/: what is broken comes first.

The page polls /status/fragment/ every few seconds and swaps in the
server-rendered table (static/connector/status.js), so it stays current
without a reload.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from connector.models import Server
from connector.roles import operator_required
from connector.services.fetches import last_fetches, unknown_fetches
from connector.services.graph_switch import retirement_notice
from connector.services.hosts import recently_refused
from connector.services.status import STATUSES, calendar_rows, credential_rows, worker_state
from connector.views.pages import page_context

POLL_SECONDS = 10


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
        "refused_hosts": recently_refused(now),
        "fetches": list(last_fetches(sorted(row.calendar_id for row in rows)).items()),
        "unknown_fetches": unknown_fetches(),
        "allowed_hosts": settings.ALLOWED_HOSTS,
        "allowed_hosts_found": settings.ALLOWED_HOSTS_FOUND,
        "time_zone": {
            "name": settings.TIME_ZONE,
            "source": {
                "TIME_ZONE": "set by TIME_ZONE",
                "TZ": "the host's, from the TZ variable",
                "the system's zone": "the host's system zone",
            }.get(settings.TIME_ZONE_SOURCE, "no zone found: UTC"),
            "utc_by_default": settings.TIME_ZONE_UTC_BY_DEFAULT,
        },
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
