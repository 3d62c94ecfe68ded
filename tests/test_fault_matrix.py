"""The fault matrix: each upstream fault, on each kind of server it applies to, as players see it.

Kinds: EWS with NTLM (on premises), EWS with OAuth and Microsoft Graph (Exchange
Online). Each case warms two calendars of one server, one with
sendCacheOnServerError (``kept``) and one without (``strict``), each reading its
own room; once their period has passed, the fault is brought about and players
ask for both feeds, PLAYER_REQUESTS times in all, half a second apart. Then:

- during the fault, ``kept`` answers 200 with its last good copy and ``strict`` a
  plain-text 502; every 200 parses (tests/fixtures/feed.py ``parse_feed``);
- Exchange is spared: the feed's back-off (FEED_RETRY_FIRST, doubling) lets one
  refresh per calendar through per back-off, and each costs a few requests at
  most (no retry loop): the requests that reached the fake (answered, dropped or
  refused in TLS) and the connections the client opened to it are both bounded;
- after the fault is lifted, both feeds are fresh again (a meeting booked during
  the fault is in them) within one period, in the same process: pooled EWS
  connections and msal's clients are kept, as in a server that runs for months.

The settings keep it fast and the time is travelled (time_machine, frozen at each
player request; the monotonic clock that bounds requests runs for real). Each case
prints one line of figures (``pytest -s tests/test_fault_matrix.py``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from connector.models import Calendar, RefreshStatus, Server
from tests.fakes.base import FakeHTTPServer
from tests.fakes.ews import FakeExchange
from tests.fakes.graph import FakeGraph
from tests.fakes.identity import FakeIdentityPlatform
from tests.fakes.rooms import FakeEvent
from tests.fixtures.feed import parse_feed

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("refresh_threads_joined"),
]

ROOMS = {"kept": "room-a@contoso.com", "strict": "room-b@contoso.com"}
PERIOD = dt.timedelta(seconds=60)  # the calendars' cachePersistence
PLAYER_REQUESTS = 50  # during the fault, both calendars in turn
PLAYER_STEP = dt.timedelta(seconds=0.5)
# The feed's back-off lets at most 2 refreshes of each calendar through in the 25 s the
# players ask (the first at once, the next 10 s after it failed); each costs at most
# PER_REFRESH requests and connections (one request and no retry is what they cost now;
# an NTLM handshake on a new connection is two).
MAX_REFRESHES = 2 * len(ROOMS)
PER_REFRESH = 2
REQUEST_TIMEOUT = 0.5  # EXCHANGE_REQUEST_TIMEOUT of the cases
BOOKED = "Booked during the outage"


@dataclass
class Upstream:
    """What a fault switches: the server's fake, its port, and the identity platform."""

    kind: str
    fake: Any  # FakeExchange | FakeGraph
    port: int
    identity: FakeIdentityPlatform | None


@dataclass(frozen=True)
class Fault:
    on: Callable[[Upstream], None]
    off: Callable[[Upstream], None]
    kinds: tuple[str, ...] = ("ews-ntlm", "ews-oauth", "graph")
    prepare: Callable[[Upstream], None] | None = None  # before the feeds are warmed


def slow(up: Upstream) -> None:
    up.fake.faults.latency = REQUEST_TIMEOUT + 0.3


def fail_with(status: int) -> Callable[[Upstream], None]:
    def on(up: Upstream) -> None:
        up.fake.faults.fail_next(10_000, status)

    return on


def reset_faults(up: Upstream) -> None:
    up.fake.faults.reset()


def busy(up: Upstream) -> None:
    up.fake.inject_busy(10_000, back_off_ms=297_749)  # what Exchange Online sends: ~5 minutes


def not_busy(up: Upstream) -> None:
    up.fake.clear_injected()


def throttled(up: Upstream) -> None:
    up.fake.throttle_next(10_000, retry_after=5)


def not_throttled(up: Upstream) -> None:
    up.fake.stop_throttling()


def down(up: Upstream) -> None:
    up.fake.faults.down = True


def short_tokens(up: Upstream) -> None:
    # msal renews a token 5 minutes before it expires: a token of 5.5 minutes is renewed
    # after 30 s, so the refreshes of the fault need the identity platform.
    assert up.identity is not None
    up.identity.expires_in = 330


def token_endpoint_down(up: Upstream) -> None:
    assert up.identity is not None
    up.identity.faults.down = True


def token_endpoint_up(up: Upstream) -> None:
    assert up.identity is not None
    up.identity.faults.down = False


def untrusted_certificate(up: Upstream) -> None:
    up.fake.faults.untrusted_certificate = True


def nothing_listening(up: Upstream) -> None:
    up.fake.stop()


def listening_again(up: Upstream) -> None:
    up.fake.start(port=up.port)


FAULTS: dict[str, Fault] = {
    "slow": Fault(slow, reset_faults),
    "http 500": Fault(fail_with(500), reset_faults),
    "http 503": Fault(fail_with(503), reset_faults),
    "ErrorServerBusy": Fault(busy, not_busy, kinds=("ews-ntlm", "ews-oauth")),
    "429 Retry-After": Fault(throttled, not_throttled, kinds=("graph",)),
    "down": Fault(down, reset_faults),
    "token endpoint down": Fault(
        token_endpoint_down, token_endpoint_up, kinds=("ews-oauth", "graph"), prepare=short_tokens
    ),
    "untrusted certificate": Fault(untrusted_certificate, reset_faults),
    "connection refused": Fault(nothing_listening, listening_again),
}
CASES = [(fault, kind) for fault, spec in FAULTS.items() for kind in spec.kinds]
SERVERS = {"ews-ntlm": "ews_server", "ews-oauth": "ews_oauth_server", "graph": "graph_server"}
FAKES = {"ews-ntlm": "fake_ews", "ews-oauth": "fake_ews", "graph": "fake_graph"}


@pytest.fixture(autouse=True)
def quick_settings(settings: Any) -> None:
    settings.EXCHANGE_REQUEST_TIMEOUT = REQUEST_TIMEOUT
    settings.REFRESH_TIMEOUT = 1  # one refresh: no retry waited for beyond a second
    settings.FEED_REFRESH_TIMEOUT = 3


def at(moment: dt.datetime) -> Any:
    return time_machine.travel(moment, tick=False)


def book(fake: FakeHTTPServer, room: str, day: dt.date) -> None:
    """A meeting booked in the room while Exchange was failing."""
    start = dt.datetime.combine(day, dt.time(10, 0), tzinfo=dt.UTC)
    event = FakeEvent(BOOKED, start=start, end=start + dt.timedelta(hours=1))
    if isinstance(fake, FakeExchange):
        fake.add_event(room, event)
    else:
        assert isinstance(fake, FakeGraph)
        fake.rooms.setdefault(room, []).append(event)


def refreshes(calendars: list[Calendar]) -> int:
    """Failed refreshes recorded for the calendars (each one the feed let through)."""
    return sum(
        RefreshStatus.objects.filter(calendar__in=calendars).values_list(
            "consecutive_failures", flat=True
        )
    )


@pytest.mark.parametrize(("fault", "kind"), CASES, ids=[f"{f}-{k}" for f, k in CASES])
def test_players_get_the_cache_or_502_exchange_is_spared_and_the_feed_recovers(
    fault: str,
    kind: str,
    request: pytest.FixtureRequest,
    client: Client,
    make_calendar: Any,
    socket_connects: list[tuple[str, int]],
) -> None:
    spec = FAULTS[fault]
    server: Server = request.getfixturevalue(SERVERS[kind])
    fake = request.getfixturevalue(FAKES[kind])
    identity = request.getfixturevalue("fake_identity") if kind != "ews-ntlm" else None
    up = Upstream(kind, fake, fake.port, identity)
    if spec.prepare is not None:
        spec.prepare(up)
    calendars = {
        name: make_calendar(
            name,
            server=server,
            resources=(room,),
            cache_persistence=int(PERIOD.total_seconds()),
            send_cache_on_server_error=name == "kept",
        )
        for name, room in ROOMS.items()
    }
    start = timezone.now()
    with at(start):
        good = client.get("/ical/kept.ics")
        assert client.get("/ical/strict.ics").status_code == 200
    assert good.status_code == 200
    parse_feed(good.content)  # the copy served during the fault, byte for byte

    # The fault, once both snapshots are stale.
    spec.on(up)
    exchange_before = fake.attempts()
    tokens_before = identity.attempts() if identity is not None else 0
    connects_before = len(socket_connects)
    began = start + PERIOD + dt.timedelta(seconds=1)
    for number in range(PLAYER_REQUESTS):
        name = "kept" if number % 2 == 0 else "strict"
        with at(began + number * PLAYER_STEP):
            answer = client.get(f"/ical/{name}.ics")
        if name == "kept":
            assert answer.status_code == 200, answer.content[:300]
            assert answer.content == good.content
        else:
            assert answer.status_code == 502, answer.content[:300]
            assert answer["Content-Type"] == "text/plain; charset=utf-8"
    tried = refreshes(list(calendars.values()))
    exchange_requests = fake.attempts() - exchange_before
    token_requests = identity.attempts() - tokens_before if identity is not None else 0
    connects = sum(1 for address in socket_connects[connects_before:] if address[1] == up.port)

    assert 1 <= tried <= MAX_REFRESHES, f"{tried} refreshes let through"
    assert exchange_requests <= MAX_REFRESHES * PER_REFRESH, f"{exchange_requests} requests"
    assert connects <= MAX_REFRESHES * PER_REFRESH, f"{connects} connections"
    assert token_requests <= MAX_REFRESHES * PER_REFRESH, f"{token_requests} token requests"

    # The fault is lifted; a meeting booked meanwhile must reach both feeds.
    spec.off(up)
    lifted = began + PLAYER_REQUESTS * PLAYER_STEP
    for room in ROOMS.values():
        book(fake, room, lifted.date() + dt.timedelta(days=1))
    recovered: dict[str, float] = {}
    moment = lifted
    while len(recovered) < len(ROOMS) and moment <= lifted + PERIOD:
        for name in ROOMS:
            if name in recovered:
                continue
            with at(moment):
                answer = client.get(f"/ical/{name}.ics")
            if answer.status_code == 200 and BOOKED.encode() in answer.content:
                parse_feed(answer.content)
                recovered[name] = (moment - lifted).total_seconds()
        moment += dt.timedelta(seconds=1)

    assert set(recovered) == set(ROOMS), (
        f"not fresh within one period: {set(ROOMS) - set(recovered)}"
    )
    print(
        f"\nFIGURES {fault:22} {kind:9}  kept 200 (cache)  strict 502  "
        f"refreshes {tried}  exchange requests {exchange_requests}  connections {connects}  "
        f"token requests {token_requests}  recovered in {max(recovered.values()):.0f} s"
    )
