"""Who may fetch a feed: players in ICAL_ALLOWED_NETWORKS, or anyone with the feed key.

The client address is the TCP peer (REMOTE_ADDR), unless that peer is one of
TRUSTED_PROXIES: then it is the right-most address of X-Forwarded-For that is
not a trusted proxy itself. Each proxy appends the address it saw, so whatever a
client wrote into that header stands to the left of it and is never believed.
Behind a reverse proxy that is not listed, every request comes from the proxy:
there the proxy must be left out of ICAL_ALLOWED_NETWORKS and players use their
feed key (README: "Production: HTTPS behind a reverse proxy"). The admin's
login lock-out (django-axes) counts by this same address.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
from typing import Protocol

from django.conf import settings
from django.http import HttpRequest

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@functools.cache
def _networks(raw: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in raw)


class HasFeedKey(Protocol):
    """A calendar, or what the feed reads of one (connector/services/feeds.FeedState)."""

    @property
    def feed_key(self) -> str: ...


@functools.lru_cache(maxsize=4096)
def _address(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped  # ::ffff:10.0.0.5 on dual-stack sockets
    return address


def _within(text: str, raw_networks: list[str]) -> bool:
    address = _address(text)
    if address is None:
        return False
    networks = _networks(tuple(raw_networks))
    return any(address.version == network.version and address in network for network in networks)


def client_address(request: HttpRequest) -> str:
    """The address a request came from, through TRUSTED_PROXIES (see the module's docstring)."""
    peer = str(request.META.get("REMOTE_ADDR") or "")
    proxies = settings.TRUSTED_PROXIES
    if not proxies or not _within(peer, proxies):
        return peer
    forwarded = str(request.META.get("HTTP_X_FORWARDED_FOR") or "").split(",")
    # No header: a request of the proxy's host itself (a local monitoring check).
    address = peer
    for item in reversed([item.strip() for item in forwarded if item.strip()]):
        address = item
        # Something that is not an address stops the walk and is the answer: it
        # is in no network, so the request needs a key rather than a guess.
        if not _within(address, proxies):
            break
    return address


def in_allowed_networks(request: HttpRequest) -> bool:
    return _within(client_address(request), settings.ICAL_ALLOWED_NETWORKS)


def has_feed_key(request: HttpRequest, calendar: HasFeedKey) -> bool:
    given = request.GET.get("key", "")
    if not given or not calendar.feed_key:
        return False
    return hmac.compare_digest(given.encode("utf-8"), calendar.feed_key.encode("utf-8"))


def may_fetch_feed(request: HttpRequest, calendar: HasFeedKey, client: str | None = None) -> bool:
    """``client``: the request's client_address(), when the caller has it already."""
    address = client_address(request) if client is None else client
    return _within(address, settings.ICAL_ALLOWED_NETWORKS) or has_feed_key(request, calendar)
