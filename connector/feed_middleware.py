"""Feeds skip the middleware only pages need (sessions, users, messages, CSRF, axes).

A player's feed request carries no cookie and changes nothing: reading a
session, a user and messages, and checking CSRF and the login lock-out,
cost more than serving the snapshot (issue 13, docs/PERFORMANCE.md). This
middleware stands right after SecurityMiddleware and WhiteNoise and answers
``/ical/<id>.ics`` and the PHP connector's ``2ical.php`` itself, through the
same view functions the URLconf names. What the feed keeps: HTTPS redirect
and HSTS (SecurityMiddleware, before it), ALLOWED_HOSTS (``get_host()``
below, as CommonMiddleware would), X-Frame-Options, the access check, the
metrics and conditional GET (in the view). The console's trace
(``2ical.php?...&debug=yes``) needs the signed-in user, so it goes the
whole way.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve

FEED_ROUTES = frozenset({"feed", "legacy-feed"})


class FeedFastPathMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if path.startswith("/ical/") or path.endswith("/2ical.php"):
            response = self._feed(request)
            if response is not None:
                return response
        return self.get_response(request)

    def _feed(self, request: HttpRequest) -> HttpResponse | None:
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return None
        if match.url_name not in FEED_ROUTES:
            return None
        if match.url_name == "legacy-feed" and request.GET.get("debug", "").lower() == "yes":
            return None
        request.get_host()  # DisallowedHost → 400, as for every other page
        response = match.func(request, *match.args, **match.kwargs)
        response.headers.setdefault("X-Frame-Options", settings.X_FRAME_OPTIONS)
        return response
