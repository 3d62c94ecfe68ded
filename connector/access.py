"""Who may fetch a feed: players in ICAL_ALLOWED_NETWORKS, or anyone with the feed key.

The client address is the TCP peer (REMOTE_ADDR). Behind a reverse proxy every
request comes from the proxy, so there the proxy must be left out of
ICAL_ALLOWED_NETWORKS and players use their feed key (README: "feed").
"""

from __future__ import annotations

import functools
import hmac
import ipaddress

from django.conf import settings
from django.http import HttpRequest

from connector.models import Calendar

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.cache
def _networks(raw: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in raw)


def client_address(request: HttpRequest) -> str:
    return str(request.META.get("REMOTE_ADDR") or "")


def in_allowed_networks(request: HttpRequest) -> bool:
    try:
        address = ipaddress.ip_address(client_address(request))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped  # ::ffff:10.0.0.5 on dual-stack sockets
    networks = _networks(tuple(settings.ICAL_ALLOWED_NETWORKS))
    return any(address.version == network.version and address in network for network in networks)


def has_feed_key(request: HttpRequest, calendar: Calendar) -> bool:
    given = request.GET.get("key", "")
    if not given or not calendar.feed_key:
        return False
    return hmac.compare_digest(given.encode("utf-8"), calendar.feed_key.encode("utf-8"))


def may_fetch_feed(request: HttpRequest, calendar: Calendar) -> bool:
    return in_allowed_networks(request) or has_feed_key(request, calendar)
