"""The feed: ``GET /ical/<calendarId>.ics``.

A fresh snapshot is served as is, without touching Exchange. A stale or
missing one is refreshed first, waiting at most FEED_REFRESH_TIMEOUT (a
refresh already running elsewhere is waited for, not repeated); when that
fails, the last good snapshot is served if the calendar says
``sendCacheOnServerError``, otherwise a short plain-text 502. The PHP
connector's ``2ical.php`` URL serves the same (connector/views/legacy.py).
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotModified
from django.utils import timezone
from django.utils.cache import get_conditional_response
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from connector.access import client_address, may_fetch_feed
from connector.core import metrics
from connector.models import Calendar, Snapshot
from connector.services import feeds
from connector.services.feeds import FeedState
from connector.services.fetches import record_fetch
from connector.services.first_run import note_feed_served
from connector.services.refresh import refresh_or_wait
from connector.views.pages import text_response

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/calendar; charset=utf-8"
# The request headers that may turn a GET into a 304 or a 412 (django.utils.cache).
CONDITIONAL = (
    "HTTP_IF_NONE_MATCH",
    "HTTP_IF_MODIFIED_SINCE",
    "HTTP_IF_MATCH",
    "HTTP_IF_UNMODIFIED_SINCE",
)


def _snapshot(calendar: Calendar) -> Snapshot | None:
    return Snapshot.objects.filter(calendar=calendar).first()


def _serve(
    request: HttpRequest,
    state: FeedState,
    now: dt.datetime,
    *,
    text: str | None = None,
    stale: bool = False,
) -> HttpResponse | None:
    """The snapshot with its validators, or a 304 (412) without touching its body.

    The body is ``text`` when the caller has read it, else this process's copy
    (connector/services/feeds.py). None: the snapshot was replaced between the
    two reads; the caller reads it again.
    """
    snapshot = state.snapshot
    assert snapshot is not None
    cache_control = f"max-age={state.cache_persistence}"
    meta = request.META
    if any(name in meta for name in CONDITIONAL):
        conditional: HttpResponse | None
        if meta.get("HTTP_IF_NONE_MATCH") == snapshot.etag and not (
            "HTTP_IF_MATCH" in meta or "HTTP_IF_UNMODIFIED_SINCE" in meta
        ):
            # What players send: the one ETag they have, and it is current.
            conditional = HttpResponseNotModified()
        else:
            conditional = get_conditional_response(
                request, etag=snapshot.etag, last_modified=snapshot.last_modified
            )
        if conditional is not None:
            if conditional.status_code == 304:  # the validators, as Django's 304 copies them
                conditional["ETag"] = snapshot.etag
                conditional["Last-Modified"] = snapshot.last_modified_http
                conditional["Cache-Control"] = cache_control
            return conditional
    if text is not None:
        body = text.encode("utf-8")
        feeds.remember(state.pk, snapshot.etag, body)
    else:
        cached = feeds.body(state)
        if cached is None:
            return None
        body = cached
    response = HttpResponse(body, content_type=CONTENT_TYPE)
    response["Content-Length"] = str(len(body))
    response["ETag"] = snapshot.etag
    response["Last-Modified"] = snapshot.last_modified_http
    response["Cache-Control"] = cache_control
    response["Age"] = str(max(0, int((now - snapshot.generated).total_seconds())))
    response["Content-Disposition"] = f'inline; filename="{state.calendar_id}.ics"'
    if stale:
        response["Warning"] = '111 - "Revalidation Failed"'
    return response


def _serve_snapshot(
    request: HttpRequest, calendar: Calendar, snapshot: Snapshot, *, stale: bool = False
) -> HttpResponse:
    """A snapshot read through the ORM, with its text (the refresh's way)."""
    state = FeedState.of(calendar, snapshot)
    response = _serve(request, state, timezone.now(), text=snapshot.ics, stale=stale)
    assert response is not None  # the text was given
    return response


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
        return _serve_snapshot(request, calendar, snapshot)
    outcome = refresh_or_wait(calendar, float(settings.FEED_REFRESH_TIMEOUT))
    if outcome.ok:
        refreshed = _snapshot(calendar)
        if refreshed is not None:
            return _serve_snapshot(request, calendar, refreshed)
    snapshot = _snapshot(calendar)
    if snapshot is not None and calendar.send_cache_on_server_error:
        log.warning("serving the last good snapshot of %s: %s", calendar.calendar_id, outcome.error)
        return _serve_snapshot(request, calendar, snapshot, stale=True)
    return text_response(502, f"Calendar {calendar.calendar_id} could not be read: {outcome.error}")


def feed_response(request: HttpRequest, calendar_id: str, *, shown_path: str = "") -> HttpResponse:
    """The feed of ``calendar_id`` for this request: 404, 403, or the feed; counted.

    ``shown_path`` is how the fetch is named on /status/ (default: the request's path).
    A fresh snapshot costs one small query and no write (connector/services/feeds.py);
    a stale or missing one goes through the refresh.
    """
    now = timezone.now()
    client = client_address(request)
    state = feeds.read_state(calendar_id)
    response: HttpResponse | None = None
    if state is None:
        response = text_response(404, f"No calendar with id {calendar_id!r}.")
    elif not may_fetch_feed(request, state, client):
        response = text_response(
            403,
            "This address may not read feeds: add it to ICAL_ALLOWED_NETWORKS, "
            "or use the calendar's feed URL with its key.",
        )
    elif state.is_fresh(now):
        response = _serve(request, state, now)
    if response is None:  # stale, missing, or replaced since it was read
        response = _refreshed_feed(request, calendar_id)
    if response.status_code == 200:
        note_feed_served(calendar_id)  # the first-run guide ends (a query once per process)
    _record_after_sending(
        response,
        calendar_id,
        shown_path or request.path,
        client,
        str(request.META.get("HTTP_USER_AGENT") or ""),
        known=state is not None,
    )
    return counted(request, response)


def _refreshed_feed(request: HttpRequest, calendar_id: str) -> HttpResponse:
    """A stale or missing snapshot: the whole calendar, for its refresh."""
    # The own password is read (decrypted) only when a refresh needs it.
    calendar = (
        Calendar.objects.select_related("server", "snapshot")
        .defer("password")
        .filter(calendar_id=calendar_id)
        .first()
    )
    if calendar is None:  # deleted since the first read
        return text_response(404, f"No calendar with id {calendar_id!r}.")
    return calendar_feed(request, calendar)


def _record_after_sending(
    response: HttpResponse,
    calendar_id: str,
    path: str,
    client: str,
    user_agent: str,
    *,
    known: bool,
) -> None:
    """Record who fetched, once the answer is sent: the WSGI server closes the response
    after writing it, so the player never waits for this (at most one write a minute)."""
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
    metrics.count_feed_request(response.status_code)
    if request.method == "HEAD":
        # The length of what GET would send, and no body (WSGI servers expect none).
        length = response.get("Content-Length") or str(len(response.content))
        response.content = b""
        response["Content-Length"] = length
    return response


# No form posts here: another method is 405, not a CSRF 403.
@csrf_exempt
@require_safe
def feed(request: HttpRequest, calendar_id: str) -> HttpResponse:
    return feed_response(request, calendar_id)
