"""The feed: ``GET /ical/<calendarId>.ics`` and the PHP connector's ``2ical.php`` URL.

A fresh snapshot is served as is, without touching Exchange. A stale or
missing one is refreshed first, waiting at most FEED_REFRESH_TIMEOUT (a
refresh already running elsewhere is waited for, not repeated); when that
fails, the last good snapshot is served if the calendar says
``sendCacheOnServerError``, otherwise a short plain-text 502.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.cache import get_conditional_response
from django.utils.http import http_date
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from connector import metrics
from connector.access import may_fetch_feed
from connector.models import Calendar, RefreshStatus, Snapshot
from connector.refresh import refresh_calendar, wait_for_release
from connector.snapshots import age_seconds, is_fresh
from connector.views.console import debug_trace_response

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/calendar; charset=utf-8"


def _text(status: int, message: str) -> HttpResponse:
    return HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")


def _snapshot(calendar: Calendar) -> Snapshot | None:
    return Snapshot.objects.filter(calendar=calendar).first()


def _last_error(calendar: Calendar) -> str:
    status = RefreshStatus.objects.filter(calendar=calendar).first()
    if status is not None and status.consecutive_failures and status.last_error:
        return status.last_error
    return "the refresh did not finish in time"


def _serve(
    request: HttpRequest, calendar: Calendar, snapshot: Snapshot, *, stale: bool = False
) -> HttpResponse:
    response = HttpResponse(snapshot.ics, content_type=CONTENT_TYPE)
    response["ETag"] = snapshot.etag
    response["Last-Modified"] = http_date(snapshot.changed.timestamp())
    response["Cache-Control"] = f"max-age={calendar.cache_persistence}"
    response["Age"] = str(int(age_seconds(snapshot, timezone.now())))
    response["Content-Disposition"] = f'inline; filename="{calendar.calendar_id}.ics"'
    if stale:
        response["Warning"] = '111 - "Revalidation Failed"'
    conditional = get_conditional_response(
        request,
        etag=snapshot.etag,
        last_modified=int(snapshot.changed.timestamp()),
        response=response,
    )
    return conditional if conditional is not None else response


def _refresh_now(calendar: Calendar) -> tuple[bool, str]:
    """Refresh (or wait for the refresh running elsewhere); (succeeded, why not)."""
    timeout = float(settings.FEED_REFRESH_TIMEOUT)
    started = timezone.now()
    outcome = refresh_calendar(calendar, timeout=timeout)
    if not outcome.skipped:
        return outcome.ok, outcome.error
    wait_for_release(calendar, timeout)
    status = RefreshStatus.objects.filter(calendar=calendar).first()
    ok = (
        status is not None
        and status.last_success is not None
        and status.last_success >= started - dt.timedelta(seconds=timeout)
        and status.consecutive_failures == 0
    )
    return ok, "" if ok else _last_error(calendar)


def _loaded_snapshot(calendar: Calendar) -> Snapshot | None:
    """The snapshot read with the calendar (select_related), without another query."""
    try:
        return calendar.snapshot
    except Snapshot.DoesNotExist:
        return None


def calendar_feed(request: HttpRequest, calendar: Calendar) -> HttpResponse:
    """The feed of a calendar the caller may read."""
    snapshot = _loaded_snapshot(calendar)
    if is_fresh(snapshot, calendar, timezone.now()):
        assert snapshot is not None
        return _serve(request, calendar, snapshot)
    ok, error = _refresh_now(calendar)
    if ok:
        refreshed = _snapshot(calendar)
        if refreshed is not None:
            return _serve(request, calendar, refreshed)
    snapshot = _snapshot(calendar)
    if snapshot is not None and calendar.send_cache_on_server_error:
        log.warning("serving the last good snapshot of %s: %s", calendar.calendar_id, error)
        return _serve(request, calendar, snapshot, stale=True)
    return _text(502, f"Calendar {calendar.calendar_id} could not be read: {error}")


def _feed_response(request: HttpRequest, calendar_id: str, *, debug: bool = False) -> HttpResponse:
    # The own password is read (decrypted) only when a refresh needs it.
    calendar = (
        # One query for the hot path: the calendar, its server and its snapshot.
        Calendar.objects.select_related("server", "snapshot")
        .defer("password")
        .filter(calendar_id=calendar_id)
        .first()
    )
    if calendar is None:
        return _text(404, f"No calendar with id {calendar_id!r}.")
    if debug:
        # The test console's trace, for logged-in staff (connector.views.console decides).
        return debug_trace_response(request, calendar)
    if not may_fetch_feed(request, calendar):
        return _text(
            403,
            "This address may not read feeds: add it to ICAL_ALLOWED_NETWORKS, "
            "or use the calendar's feed URL with its key.",
        )
    return calendar_feed(request, calendar)


def _counted(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    metrics.FEED_REQUESTS.labels(status=str(response.status_code)).inc()
    if request.method == "HEAD":
        # The length of what GET would send, and no body (WSGI servers expect none).
        length = len(response.content)
        response.content = b""
        response["Content-Length"] = str(length)
    return response


# No form posts here: another method is 405, not a CSRF 403.
@csrf_exempt
@require_safe
def feed(request: HttpRequest, calendar_id: str) -> HttpResponse:
    return _counted(request, _feed_response(request, calendar_id))


@csrf_exempt
@require_safe
def legacy_feed(request: HttpRequest) -> HttpResponse:
    """``2ical.php?calendarId=<id>``: the PHP connector's URL, so players only change host."""
    calendar_id = request.GET.get("calendarId", "")
    if not calendar_id:
        return _counted(request, _text(404, "Give the calendar as ?calendarId=<id>."))
    debug = request.GET.get("debug", "").lower() == "yes"
    return _counted(request, _feed_response(request, calendar_id, debug=debug))
