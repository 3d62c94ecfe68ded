"""The test console /console/<calendarId>/ and 2ical.php?debug=yes.

A live fetch through the refresh's own pipeline, shown step by step; it saves
nothing unless the user clicks "Refresh now" (a real refresh, which does).
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from connector.models import Calendar
from connector.roles import can_operate, operator_required
from connector.services.console import render_text, run_console, step_lines
from connector.services.graph_switch import retirement_notice
from connector.services.refresh import refresh_calendar
from connector.views.pages import calendar_admin_url, page_context

log = logging.getLogger(__name__)


def _get_calendar(calendar_id: str) -> Calendar:
    return get_object_or_404(Calendar.objects.select_related("server"), calendar_id=calendar_id)


def console_response(request: HttpRequest, calendar: Calendar) -> HttpResponse:
    """Run the console for an authorized user and answer in the asked format."""
    run = run_console(calendar)
    output = request.GET.get("format", "html")
    if output == "ics":
        if run.result is None:
            return HttpResponse(
                render_text(run), status=502, content_type="text/plain; charset=utf-8"
            )
        response = HttpResponse(run.result.ics, content_type="text/calendar; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{calendar.calendar_id}.ics"'
        return response
    if output == "text":
        return HttpResponse(render_text(run), content_type="text/plain; charset=utf-8")
    context = page_context(request, f"Test console: {calendar.calendar_id}")
    context.update(
        {
            "calendar": calendar,
            "server": calendar.server,
            "run": run,
            "steps": [(step, step_lines(step)) for step in run.trace.steps],
            "events": run.events(),
            "timeline": run.timeline(),
            "admin_url": calendar_admin_url(calendar),
            "console_url": reverse("console", args=[calendar.calendar_id]),
            "ics_href": (
                "data:text/calendar;charset=utf-8," + quote(run.result.ics)
                if run.result is not None
                else ""
            ),
            "retirement_notice": (
                retirement_notice(timezone.localdate())
                if calendar.server.points_at_exchange_online_ews
                else ""
            ),
            "can_refresh": can_operate(request.user),
        }
    )
    return render(request, "connector/console.html", context)


@never_cache
@operator_required
def console(request: HttpRequest, calendar_id: str) -> HttpResponse:
    return console_response(request, _get_calendar(calendar_id))


@operator_required
def debug_trace(request: HttpRequest, calendar_id: str) -> HttpResponse:
    """``2ical.php?calendarId=<id>&debug=yes``: the console, for logged-in staff only.

    Players never send debug=yes, so an anonymous request is a person with a
    browser: send them to the login page (and back here); a logged-in user
    without the right gets 403. Neither ever sees the trace.
    """
    response = console_response(request, _get_calendar(calendar_id))
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@operator_required
def refresh_now(request: HttpRequest, calendar_id: str) -> HttpResponse:
    """A real refresh (saves the snapshot), then the status page with the outcome."""
    calendar = _get_calendar(calendar_id)
    # Inline, like manage.py refresh_calendars: each Exchange call has its own time-out.
    outcome = refresh_calendar(calendar)
    log.info("Refresh now by %s: %s", request.user, outcome.line())
    if outcome.ok:
        messages.success(request, f"Refreshed: {outcome.line()}")
    elif outcome.skipped:
        messages.warning(request, f"{calendar.calendar_id} is being refreshed already.")
    else:
        messages.error(request, f"Refresh failed: {outcome.line()}")
    return redirect(reverse("status") + "#calendars")
