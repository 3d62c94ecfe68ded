"""Feeds skip the middleware only pages need (sessions, users, messages, CSRF, axes).

A player's feed request carries no cookie and changes nothing: reading a
session, a user and messages, and checking CSRF and the login lock-out,
cost more than serving the snapshot (docs/PERFORMANCE.md). This
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
from django.urls import Resolver404, ResolverMatch, get_resolver, get_urlconf, resolve
from django.urls.resolvers import URLResolver

FEED_ROUTES = frozenset({"feed", "legacy-feed"})
_ROUTES_KEPT = 4096  # paths remembered per process (each calendar's feed URL is one)

# path → (the URLconf's resolver it was resolved with, its feed route or None)
_routes: dict[str, tuple[URLResolver, ResolverMatch | None]] = {}


def feed_route(path: str) -> ResolverMatch | None:
    """The feed route ``path`` resolves to, or None: resolved once per path and URLconf
    (resolving walks the URL patterns, which cost a feed more than its database read)."""
    resolver = get_resolver(get_urlconf())
    known = _routes.get(path)
    if known is not None and known[0] is resolver:
        return known[1]
    try:
        match: ResolverMatch | None = resolve(path)
    except Resolver404:
        match = None
    if match is not None and match.url_name not in FEED_ROUTES:
        match = None
    if len(_routes) >= _ROUTES_KEPT:
        _routes.clear()
    _routes[path] = (resolver, match)
    return match


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
        match = feed_route(request.path_info)
        if match is None:
            return None
        if match.url_name == "legacy-feed" and request.GET.get("debug", "").lower() == "yes":
            return None
        request.get_host()  # DisallowedHost → 400, as for every other page
        response = match.func(request, *match.args, **match.kwargs)
        response.headers.setdefault("X-Frame-Options", settings.X_FRAME_OPTIONS)
        return response
