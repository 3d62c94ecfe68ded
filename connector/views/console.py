"""The test console /console/<calendarId>/ and 2ical.php?debug=yes.

A live fetch through the refresh's own pipeline, shown step by step as each
step ends: the page is streamed (StreamingHttpResponse), its top and each step's
row first, the result (each room's outcome, the events, the timeline, the
iCalendar) when the fetch ends or the console's budget (CONSOLE_BUDGET_SECONDS)
runs out. Without JavaScript the page is whole all the same; console.js only
moves the outcome above the steps. It saves nothing unless the user clicks
"Refresh now" (a real refresh, which does).

A streamed answer holds a gunicorn sync worker for the length of the fetch (at
most the budget), as the page did before it streamed; ``X-Accel-Buffering: no``
asks nginx not to buffer it, and no middleware of this site compresses or
buffers a streamed answer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from connector.models import Calendar
from connector.roles import can_operate, operator_required
from connector.services.console import ConsoleRun, run_console, stream_console
from connector.services.console_text import render_head, render_step, render_tail, step_lines
from connector.services.graph_switch import retirement_notice
from connector.services.refresh import refresh_calendar
from connector.views.pages import calendar_admin_url, page_context

log = logging.getLogger(__name__)

STEPS_MARK = "<!--ews-console-steps-->"
RESULT_MARK = "<!--ews-console-result-->"


def _get_calendar(calendar_id: str) -> Calendar:
    return get_object_or_404(Calendar.objects.select_related("server"), calendar_id=calendar_id)


def _streamed(chunks: Iterator[str], content_type: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(chunks, content_type=content_type)
    response["X-Accel-Buffering"] = "no"  # nginx: pass each chunk on as it comes
    return response


def console_response(request: HttpRequest, calendar: Calendar) -> HttpResponseBase:
    """Run the console for an authorized user and answer in the asked format."""
    output = request.GET.get("format", "html")
    if output == "ics":
        run = run_console(calendar)
        if not run.ok or run.result is None:
            return HttpResponse(_text(run), status=502, content_type="text/plain; charset=utf-8")
        response = HttpResponse(run.result.ics, content_type="text/calendar; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{calendar.calendar_id}.ics"'
        return response
    if output == "text":
        return _streamed(_text_chunks(calendar), "text/plain; charset=utf-8")
    return _streamed(_html_chunks(request, calendar), "text/html; charset=utf-8")


def _text(run: ConsoleRun) -> str:
    steps = "".join(render_step(step) for step in run.steps)
    return render_head(run) + steps + render_tail(run)


def _text_chunks(calendar: Calendar) -> Iterator[str]:
    run, steps = stream_console(calendar)
    yield render_head(run)
    for step in steps:
        yield render_step(step)
    yield render_tail(run)


def _html_chunks(request: HttpRequest, calendar: Calendar) -> Iterator[str]:
    """The page's top, each step's row as it ends, then the result and the page's end."""
    run, steps = stream_console(calendar)
    context = page_context(request, f"Test console: {calendar.calendar_id}")
    context.update(
        {
            "calendar": calendar,
            "server": calendar.server,
            "budget": run.budget_seconds,
            "admin_url": calendar_admin_url(calendar),
            "console_url": reverse("console", args=[calendar.calendar_id]),
            "retirement_notice": (
                retirement_notice(timezone.localdate())
                if calendar.server.points_at_exchange_online_ews
                else ""
            ),
            "can_refresh": can_operate(request.user),
            "steps_mark": mark_safe(STEPS_MARK),  # noqa: S308 - a constant
            "result_mark": mark_safe(RESULT_MARK),  # noqa: S308 - a constant
        }
    )
    page = render_to_string("connector/console.html", context, request=request)
    top, _, rest = page.partition(STEPS_MARK)
    middle, _, bottom = rest.partition(RESULT_MARK)
    yield top
    shown_errors: set[str] = set()
    for step in steps:
        # A failure shows under the step it happened in, not again under the steps
        # around it (a room's read ends after its request, with the same error).
        show_error = not step.ok and step.error not in shown_errors
        shown_errors.add(step.error)
        yield render_to_string(
            "connector/console_step.html",
            {"step": step, "lines": step_lines(step), "show_error": show_error},
        )
    yield middle
    yield render_to_string("connector/console_result.html", _result_context(run), request=request)
    yield bottom


def _result_context(run: ConsoleRun) -> dict[str, Any]:
    calendar = run.calendar
    return {
        "run": run,
        "calendar": calendar,
        "events": run.events(),
        "timeline": run.timeline(),
        "subject_hints": run.subject_hints(),
        "ics_href": (
            "data:text/calendar;charset=utf-8," + quote(run.result.ics)
            if run.result is not None and run.ok
            else ""
        ),
    }


@never_cache
@operator_required
def console(request: HttpRequest, calendar_id: str) -> HttpResponseBase:
    return console_response(request, _get_calendar(calendar_id))


@operator_required
def debug_trace(request: HttpRequest, calendar_id: str) -> HttpResponseBase:
    """``2ical.php?calendarId=<id>&debug=yes``: the console, for logged-in staff only.

    Players never send debug=yes, so an anonymous request is a person with a
    browser: send them to the login page (and back here); a logged-in user
    without the right gets 403. Neither ever sees the trace.
    """
    response = console_response(request, _get_calendar(calendar_id))
    if request.method == "HEAD" and isinstance(response, StreamingHttpResponse):
        # HEAD gets GET's headers and length (legacy.counted): the page whole.
        whole = HttpResponse(response.getvalue(), status=response.status_code)
        whole["Content-Type"] = response["Content-Type"]
        response = whole
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
