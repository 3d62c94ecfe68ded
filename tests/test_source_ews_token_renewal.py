"""EWS with OAuth keeps reading after a blip: every token comes from msal, none from exchangelib.

exchangelib drops its copy of the token whenever it closes a session (after a
connection reset, an HTTP error, a refused token, or when the token its session
holds expires) and then, holding none, fetches one itself from its hard-wired
login.microsoftonline.com with the client secret it was given. Here that host is
never reached (and must never be asked): the app registration's authority is the
fake identity platform, and tokens come from msal's cache (accounts.tokens).

Each test refreshes a calendar once, brings about one blip (or the token's
expiry), and checks that the next refresh in the same process reads the room,
that every token request went to the fake identity platform (counted there) and
that no other host was looked up. When msal cannot give a token, the failure is
the token step's SourceError, with its hint.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from connector.core.errors import SourceError
from connector.core.records import Window
from connector.models import Calendar, Server
from connector.services.refresh import refresh_calendar
from connector.sources import open_source
from connector.sources.ews.protocol import MsalCredentials
from tests.fakes.ews import FakeExchange
from tests.fakes.identity import FakeIdentityPlatform

ROOM_A = "room-a@contoso.com"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


def reset(fake_ews: FakeExchange, fake_identity: FakeIdentityPlatform) -> None:
    fake_ews.faults.down = True  # the connection is closed without an answer


def http_500(fake_ews: FakeExchange, fake_identity: FakeIdentityPlatform) -> None:
    fake_ews.faults.fail_next(1, 500)


def http_503(fake_ews: FakeExchange, fake_identity: FakeIdentityPlatform) -> None:
    fake_ews.faults.fail_next(1, 503)


def refused_token(fake_ews: FakeExchange, fake_identity: FakeIdentityPlatform) -> None:
    # Exchange answers 401 (Bearer error="invalid_token") to the token msal still holds.
    fake_identity.revoke_tokens()


Blip = Callable[[FakeExchange, FakeIdentityPlatform], None]
BLIPS: dict[str, tuple[Blip, int]] = {
    # name: (how, token requests in all: the refused token costs one more)
    "connection reset": (reset, 1),
    "HTTP 500": (http_500, 1),
    "HTTP 503": (http_503, 1),
    "refused token": (refused_token, 2),
}


@pytest.fixture
def room(make_calendar: Any, ews_oauth_server: Server) -> Calendar:
    calendar: Calendar = make_calendar("room", server=ews_oauth_server, resources=(ROOM_A,))
    return calendar


def week() -> Window:
    start = dt.datetime.combine(dt.date.today(), dt.time(), tzinfo=dt.UTC)
    return Window(start, start + dt.timedelta(days=7))


def finds(fake_ews: FakeExchange) -> list[str]:
    return [op.outcome for op in fake_ews.ops if op.operation == "FindItem"]


@pytest.mark.parametrize("blip", list(BLIPS), ids=list(BLIPS))
def test_the_refresh_after_one_blip_reads_the_room(
    blip: str,
    room: Calendar,
    fake_ews: FakeExchange,
    fake_identity: FakeIdentityPlatform,
    host_lookups: list[str],
) -> None:
    how, token_requests = BLIPS[blip]
    first = refresh_calendar(room)
    assert first.ok, first.line()

    how(fake_ews, fake_identity)
    refresh_calendar(room)  # fails, or succeeds on exchangelib's retry: either way a new session
    fake_ews.faults.down = False
    fake_ews.clear_log()

    after = refresh_calendar(room)

    assert after.ok, after.line()
    assert after.event_count == first.event_count > 0
    assert finds(fake_ews) == ["ok"]
    assert fake_identity.token_requests() == token_requests
    assert set(host_lookups) <= LOCAL_HOSTS, f"looked up: {sorted(set(host_lookups))}"


@pytest.mark.django_db(transaction=True)  # refreshes run in threads (timeout)
@pytest.mark.usefixtures("refresh_threads_joined")
def test_every_refresh_after_blips_in_a_row_reads_the_room(
    room: Calendar,
    fake_ews: FakeExchange,
    fake_identity: FakeIdentityPlatform,
    host_lookups: list[str],
    settings: Any,
) -> None:
    # More failures than a connection has sessions (exchangelib loses one for good when
    # making its replacement fails): the refreshes would then wait for a session forever.
    settings.EWS_MAX_CONCURRENCY = 2
    assert refresh_calendar(room, timeout=10).ok
    for how, _ in [*BLIPS.values(), *BLIPS.values()]:
        how(fake_ews, fake_identity)
        refresh_calendar(room, timeout=10)
        fake_ews.faults.down = False
        outcome = refresh_calendar(room, timeout=10)
        assert outcome.ok, outcome.line()
    assert set(host_lookups) <= LOCAL_HOSTS, f"looked up: {sorted(set(host_lookups))}"


def test_the_refresh_after_the_token_expired_reads_the_room(
    room: Calendar,
    fake_ews: FakeExchange,
    fake_identity: FakeIdentityPlatform,
    host_lookups: list[str],
) -> None:
    # msal renews a token 5 minutes before it expires; the sessions exchangelib made with
    # the first token must take the new one, not renew themselves when the first expires.
    assert refresh_calendar(room).ok
    start = timezone.now()
    lifetime = dt.timedelta(seconds=fake_identity.expires_in)
    for moment in (lifetime - dt.timedelta(minutes=4), lifetime + dt.timedelta(minutes=1)):
        with time_machine.travel(start + moment, tick=True):
            outcome = refresh_calendar(room)
        assert outcome.ok, outcome.line()
    assert fake_identity.token_requests() == 2
    assert set(host_lookups) <= LOCAL_HOSTS, f"looked up: {sorted(set(host_lookups))}"


def test_while_msal_fails_a_replaced_session_keeps_the_last_token_still_valid() -> None:
    # exchangelib asks for a token while replacing a failed session; an error there would
    # lose the session for good. msal's error comes from the next fetch instead.
    def failing(refused: str) -> tuple[str, float]:
        raise SourceError("The identity platform is unreachable.", code="connection", step="token")

    credentials = MsalCredentials(client_id="app", tenant_id="tenant", provider=failing)
    credentials.hold("fake-last-token", time.time() + 600)
    credentials.access_token = None  # what exchangelib's close_session does
    assert credentials.session_params()["token"]["access_token"] == "fake-last-token"

    credentials.hold("fake-expired-token", time.time() - 1)
    credentials.access_token = None
    with pytest.raises(SourceError) as raised:
        credentials.session_params()
    assert raised.value.step == "token"


def test_a_token_msal_cannot_get_fails_the_token_step_with_its_hint(
    ews_oauth_server: Server,
    fake_ews: FakeExchange,
    fake_identity: FakeIdentityPlatform,
    host_lookups: list[str],
) -> None:
    open_source(ews_oauth_server).fetch(ROOM_A, week())
    fake_identity.faults.down = True
    finds_before = fake_ews.count_op("FindItem")
    expired = timezone.now() + dt.timedelta(seconds=fake_identity.expires_in + 60)
    with time_machine.travel(expired, tick=True), pytest.raises(SourceError) as raised:
        open_source(ews_oauth_server).fetch(ROOM_A, week())

    assert raised.value.step == "token"
    assert raised.value.hint
    assert fake_ews.count_op("FindItem") == finds_before  # Exchange is not asked
    assert set(host_lookups) <= LOCAL_HOSTS, f"looked up: {sorted(set(host_lookups))}"
