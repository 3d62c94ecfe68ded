"""The PHP connector's URL, ``2ical.php?calendarId=<id>``, so players only change host.

It routes one URL to two pages, as the PHP script did: the feed, or with
``debug=yes`` the test console's trace (for logged-in staff only).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from connector.views.console import debug_trace
from connector.views.feed import counted, feed_response
from connector.views.pages import text_response


@csrf_exempt
@require_safe
def legacy_feed(request: HttpRequest) -> HttpResponseBase:
    calendar_id = request.GET.get("calendarId", "")
    if not calendar_id:
        return counted(request, text_response(404, "Give the calendar as ?calendarId=<id>."))
    if request.GET.get("debug", "").lower() == "yes":
        trace = debug_trace(request, calendar_id)
        # The console streams its steps (a GET); a redirect, a refusal or HEAD is whole.
        return counted(request, trace) if isinstance(trace, HttpResponse) else trace
    return feed_response(
        request, calendar_id, shown_path=f"{request.path}?calendarId={calendar_id}"
    )
