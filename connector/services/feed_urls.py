"""The feed URL of a calendar as players reach it, and its QR code.

The URL is absolute and built from the request: a player uses the name or
address by which the administrator reached this site (``Host``, and the scheme
HTTPS behind a proxy that says so). The ``?key=`` form lets a player outside
ICAL_ALLOWED_NETWORKS in (connector.access); it is shown to those who see the
calendar in the admin, never to a visitor.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

import segno
from django.http import HttpRequest
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe

from connector.models import Calendar


@dataclass(frozen=True)
class FeedUrls:
    """The feed's URL for players in the allowed networks, and with the calendar's key."""

    plain: str
    keyed: str  # "" when the calendar has no feed key


def feed_path(calendar: Calendar) -> str:
    return reverse("feed", args=[calendar.calendar_id])


def keyed_path(calendar: Calendar) -> str:
    """The feed's path with its key, or without when the calendar has none."""
    path = feed_path(calendar)
    return f"{path}?{urlencode({'key': calendar.feed_key})}" if calendar.feed_key else path


def feed_urls(request: HttpRequest, calendar: Calendar) -> FeedUrls:
    plain = request.build_absolute_uri(feed_path(calendar))
    keyed = request.build_absolute_uri(keyed_path(calendar)) if calendar.feed_key else ""
    return FeedUrls(plain=plain, keyed=keyed)


def qr_svg(url: str, *, title: str = "") -> SafeString:
    """An inline SVG QR code of ``url`` (segno draws paths only: no text of the URL in it)."""
    code = segno.make(url, error="m")
    svg = code.svg_inline(scale=4, border=2, dark="#000", light="#fff", title=title or None)
    return mark_safe(svg)  # noqa: S308 - segno's own markup; the title is escaped by segno
