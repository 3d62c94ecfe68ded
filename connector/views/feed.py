"""The feed: ``GET /ical/<calendarId>.ics``.

A fresh snapshot is served as is, without touching Exchange. A stale or
missing one is refreshed first, waiting at most FEED_REFRESH_TIMEOUT (a
refresh already running elsewhere is waited for, not repeated); when that
fails, the last good snapshot is served if the calendar says
``sendCacheOnServerError``, otherwise a short plain-text 502. The PHP
connector's ``2ical.php`` URL serves the same (connector/views/legacy.py).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.cache import get_conditional_response
from django.utils.http import http_date
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from connector.access import client_address, may_fetch_feed
from connector.core import metrics
from connector.models import Calendar, Snapshot
from connector.services.fetches import record_fetch
from connector.services.refresh import refresh_or_wait
from connector.views.pages import text_response

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/calendar; charset=utf-8"


def _snapshot(calendar: Calendar) -> Snapshot | None:
    return Snapshot.objects.filter(calendar=calendar).first()


def _serve(
    request: HttpRequest, calendar: Calendar, snapshot: Snapshot, *, stale: bool = False
) -> HttpResponse:
    response = HttpResponse(snapshot.ics, content_type=CONTENT_TYPE)
    response["ETag"] = snapshot.etag
    response["Last-Modified"] = http_date(snapshot.changed.timestamp())
    response["Cache-Control"] = f"max-age={calendar.cache_persistence}"
    response["Age"] = str(int(snapshot.age_seconds(timezone.now())))
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


def _loaded_snapshot(calendar: Calendar) -> Snapshot | None:
    """The snapshot read with the calendar (select_related), without another query."""
    try:
        return calendar.snapshot
    except Snapshot.DoesNotExist:
        return None


def calendar_feed(request: HttpRequest, calendar: Calendar) -> HttpResponse:
    """The feed of a calendar the caller may read."""
    snapshot = _loaded_snapshot(calendar)
    if snapshot is not None and snapshot.is_fresh(calendar, timezone.now()):
        return _serve(request, calendar, snapshot)
    outcome = refresh_or_wait(calendar, float(settings.FEED_REFRESH_TIMEOUT))
    if outcome.ok:
        refreshed = _snapshot(calendar)
        if refreshed is not None:
            return _serve(request, calendar, refreshed)
    snapshot = _snapshot(calendar)
    if snapshot is not None and calendar.send_cache_on_server_error:
        log.warning("serving the last good snapshot of %s: %s", calendar.calendar_id, outcome.error)
        return _serve(request, calendar, snapshot, stale=True)
    return text_response(502, f"Calendar {calendar.calendar_id} could not be read: {outcome.error}")


def feed_response(request: HttpRequest, calendar_id: str, *, shown_path: str = "") -> HttpResponse:
    """The feed of ``calendar_id`` for this request: 404, 403, or the feed; counted.

    ``shown_path`` is how the fetch is named on /status/ (default: the request's path).
    """
    # The own password is read (decrypted) only when a refresh needs it.
    calendar = (
        # One query for the hot path: the calendar, its server and its snapshot.
        Calendar.objects.select_related("server", "snapshot")
        .defer("password")
        .filter(calendar_id=calendar_id)
        .first()
    )
    if calendar is None:
        response = text_response(404, f"No calendar with id {calendar_id!r}.")
    elif not may_fetch_feed(request, calendar):
        response = text_response(
            403,
            "This address may not read feeds: add it to ICAL_ALLOWED_NETWORKS, "
            "or use the calendar's feed URL with its key.",
        )
    else:
        response = calendar_feed(request, calendar)
    _record_after_sending(
        request, response, calendar_id, shown_path or request.path, known=calendar is not None
    )
    return counted(request, response)


def _record_after_sending(
    request: HttpRequest, response: HttpResponse, calendar_id: str, path: str, *, known: bool
) -> None:
    """Record who fetched, once the answer is sent: the WSGI server closes the response
    after writing it, so the player never waits for this (at most one write a minute)."""
    client = client_address(request)
    user_agent = str(request.META.get("HTTP_USER_AGENT") or "")
    status = response.status_code
    close = response.close

    def record_then_close() -> None:
        try:
            record_fetch(
                calendar_id,
                client=client,
                path=path,
                user_agent=user_agent,
                status=status,
                known=known,
            )
        except Exception:
            log.exception("could not record the fetch of %s", calendar_id)
        close()

    response.close = record_then_close  # type: ignore[method-assign]


def counted(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """Count the answer by status; HEAD gets GET's length and no body."""
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
    return feed_response(request, calendar_id)
