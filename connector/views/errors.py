"""Error pages that speak to the people who meet them: players and installers.

A host name that ALLOWED_HOSTS does not list gets a plain-text 400 that names
the setting and the host refused (Django's own page says only "Bad Request"),
and the name is remembered for /status/.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse
from django.views import defaults

from connector.services.hosts import clean_host, record_refused
from connector.views.pages import text_response


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if not isinstance(exception, DisallowedHost):
        return defaults.bad_request(request, exception)  # type: ignore[arg-type]
    raw = str(request.META.get("HTTP_HOST") or request.META.get("SERVER_NAME") or "")
    host = clean_host(raw.rsplit(":", 1)[0] if raw.count(":") == 1 else raw)
    record_refused(host)
    return text_response(
        400,
        f"This server does not answer to the host name {host!r}: it is not in ALLOWED_HOSTS. "
        f"Add it to ALLOWED_HOSTS (in .env, comma-separated) and restart, or use one of: "
        f"{', '.join(settings.ALLOWED_HOSTS)}.",
    )
