"""The feed's network check behind a reverse proxy: X-Forwarded-For from TRUSTED_PROXIES only.

Only the right-most address that is not a trusted proxy counts: each proxy
appends the address it saw, so what a client wrote into the header itself
stands to its left and is never believed.
"""

from __future__ import annotations

import pytest
from django.http import HttpRequest
from django.test import RequestFactory
from pytest_django.fixtures import Settings

from connector.access import client_address, in_allowed_networks

PROXY = "127.0.0.1"  # a reverse proxy on the same machine
OUTSIDE = "203.0.113.7"  # TEST-NET-3: not in the default ICAL_ALLOWED_NETWORKS
PLAYER = "10.20.0.15"  # a player on the private network


@pytest.fixture
def behind_proxy(settings: Settings) -> Settings:
    settings.TRUSTED_PROXIES = ["127.0.0.1/32", "::1/128", "192.0.2.0/24"]
    settings.ICAL_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    return settings


def request(remote_addr: str, forwarded_for: str | None = None) -> HttpRequest:
    extra = {"REMOTE_ADDR": remote_addr}
    if forwarded_for is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return RequestFactory().get("/ical/rooms.ics", **extra)


def test_a_player_behind_the_proxy_is_judged_by_its_own_address(
    behind_proxy: Settings,
) -> None:
    assert client_address(request(PROXY, PLAYER)) == PLAYER
    assert in_allowed_networks(request(PROXY, PLAYER))


def test_an_outsider_behind_the_proxy_is_not_let_in_by_the_proxy_address(
    behind_proxy: Settings,
) -> None:
    behind_proxy.ICAL_ALLOWED_NETWORKS = ["127.0.0.0/8", "10.0.0.0/8"]

    assert client_address(request(PROXY, OUTSIDE)) == OUTSIDE
    assert not in_allowed_networks(request(PROXY, OUTSIDE))


def test_an_address_the_client_wrote_itself_is_never_believed(
    behind_proxy: Settings,
) -> None:
    # The outsider sent "X-Forwarded-For: 10.0.0.9"; the proxy appended what it saw.
    spoofed = request(PROXY, f"10.0.0.9, {OUTSIDE}")

    assert client_address(spoofed) == OUTSIDE
    assert not in_allowed_networks(spoofed)


def test_a_chain_of_trusted_proxies_is_walked_from_the_right(
    behind_proxy: Settings,
) -> None:
    # client → 192.0.2.10 (a load balancer) → 127.0.0.1 (nginx) → gunicorn
    chained = request(PROXY, f"10.0.0.9, {OUTSIDE}, 192.0.2.10")
    assert client_address(chained) == OUTSIDE
    # Two headers are joined by a comma by the WSGI server: the same walk.
    assert client_address(request(PROXY, f"{PLAYER},192.0.2.10")) == PLAYER


def test_a_request_not_from_a_trusted_proxy_keeps_its_peer_address(
    behind_proxy: Settings,
) -> None:
    direct = request(OUTSIDE, PLAYER)

    assert client_address(direct) == OUTSIDE
    assert not in_allowed_networks(direct)


def test_without_trusted_proxies_the_header_is_ignored(settings: Settings) -> None:
    settings.TRUSTED_PROXIES = []

    assert client_address(request(PROXY, OUTSIDE)) == PROXY


def test_something_that_is_not_an_address_needs_a_key(behind_proxy: Settings) -> None:
    odd = request(PROXY, f"{PLAYER}, unknown")

    assert client_address(odd) == "unknown"
    assert not in_allowed_networks(odd)


def test_the_proxy_host_itself_and_dual_stack_peers(behind_proxy: Settings) -> None:
    # No header: a request of the proxy's own host (a local monitoring check).
    assert client_address(request(PROXY)) == PROXY
    # An IPv4 proxy seen on a dual-stack socket is still the trusted proxy.
    assert client_address(request("::ffff:127.0.0.1", PLAYER)) == PLAYER
    # Only trusted proxies in the header: the furthest one is the client.
    assert client_address(request(PROXY, "192.0.2.20, 192.0.2.10")) == "192.0.2.20"
