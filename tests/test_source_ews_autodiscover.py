"""A server given by autodiscover: its EWS endpoint is found once, kept, relearned on failure."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from connector.core.errors import SourceError
from connector.core.records import Window
from connector.models import Server
from connector.sources import open_source
from connector.sources.ews import autodiscover_urls, reset_pool
from tests.fakes.autodiscover import FakeAutodiscover, is_autodiscover
from tests.fakes.ews import FakeExchange
from tests.fixtures.exchange import EWS_DELEGATE, EWS_PASSWORD, EWS_ROOMS

ROOM_A = "room-a@contoso.com"


def week() -> Window:
    start = dt.datetime.combine(dt.date.today(), dt.time(), tzinfo=dt.UTC)
    return Window(start, start + dt.timedelta(days=7))


@pytest.fixture
def autodiscover(fake_ews: FakeExchange) -> Iterator[FakeAutodiscover]:
    with FakeAutodiscover(fake_ews.ews_url) as host:
        yield host


@pytest.fixture
def discovered_server(db: None, autodiscover: FakeAutodiscover, ews_service_account: Any) -> Server:
    return Server.objects.create(
        server_id="discovered",
        type=Server.Type.EWS,
        autodiscover=autodiscover.url,
        service_account=ews_service_account,
    )


@pytest.fixture
def new_exchange() -> Iterator[FakeExchange]:
    """The server the mailboxes moved to."""
    with FakeExchange() as fake:
        fake.add_user(EWS_DELEGATE, EWS_PASSWORD, "ntlm", rooms=EWS_ROOMS)
        yield fake


def test_the_endpoint_is_discovered_once_and_remembered(
    discovered_server: Server, autodiscover: FakeAutodiscover, fake_ews: FakeExchange
) -> None:
    first = open_source(discovered_server).fetch(ROOM_A, week())
    open_source(discovered_server).fetch(ROOM_A, week())
    reset_pool()  # a new process reads the endpoint from the database
    fresh = Server.objects.get(pk=discovered_server.pk)
    again = open_source(fresh).fetch(ROOM_A, week())

    assert first == again and first
    assert autodiscover.lookups() == 1
    (lookup,) = [r for r in autodiscover.requests if is_autodiscover(r)]
    assert lookup.path.endswith(f"/v1.0/{ROOM_A}") and lookup.arg("Protocol") == "EWS"
    assert fresh.ews_endpoint == fake_ews.ews_url
    assert fresh.ews_endpoint_discovered is not None
    assert fake_ews.count_op("FindItem") == 3


@pytest.mark.parametrize("failure", ["gone (404)", "down"])
def test_a_failing_endpoint_is_looked_up_again(
    discovered_server: Server,
    autodiscover: FakeAutodiscover,
    fake_ews: FakeExchange,
    new_exchange: FakeExchange,
    failure: str,
) -> None:
    open_source(discovered_server).fetch(ROOM_A, week())
    autodiscover.ews_url = new_exchange.ews_url  # the mailboxes moved
    if failure == "down":
        fake_ews.faults.down = True  # even pooled connections get no answer
    else:
        fake_ews.ews_missing = True

    records = open_source(discovered_server).fetch(ROOM_A, week())

    assert records
    assert autodiscover.lookups() == 2
    assert new_exchange.count_op("FindItem", mailbox=ROOM_A) == 1
    assert Server.objects.get(pk=discovered_server.pk).ews_endpoint == new_exchange.ews_url
    open_source(discovered_server).fetch(ROOM_A, week())
    assert autodiscover.lookups() == 2


def test_an_endpoint_that_stays_broken_is_reported_after_one_new_lookup(
    discovered_server: Server, autodiscover: FakeAutodiscover, fake_ews: FakeExchange
) -> None:
    open_source(discovered_server).fetch(ROOM_A, week())
    fake_ews.ews_missing = True

    with pytest.raises(SourceError) as caught:
        open_source(discovered_server).fetch(ROOM_A, week())

    assert caught.value.code == "endpoint-not-found"
    assert autodiscover.lookups() == 2


def test_autodiscover_that_finds_nothing_says_where_it_looked(
    db: None, ews_service_account: Any
) -> None:
    with FakeAutodiscover("") as host:
        url = host.url
    server = Server.objects.create(
        server_id="lost", type="ews", autodiscover=url, service_account=ews_service_account
    )
    with pytest.raises(SourceError) as caught:
        open_source(server).fetch(ROOM_A, week())
    assert caught.value.code == "autodiscover"
    assert caught.value.step == "autodiscover"
    assert url in caught.value.hint and "base URI" in caught.value.hint


def test_a_base_uri_wins_over_autodiscover(
    ews_server: Server, autodiscover: FakeAutodiscover
) -> None:
    ews_server.autodiscover = autodiscover.url
    ews_server.save()
    assert open_source(ews_server).fetch(ROOM_A, week())
    assert autodiscover.lookups() == 0


def test_autodiscover_hosts_of_a_mailbox_and_of_a_url() -> None:
    assert autodiscover_urls("someone@Contoso.com") == [
        "https://autodiscover.contoso.com",
        "https://contoso.com",
    ]
    assert autodiscover_urls("https://mail.contoso.com/autodiscover/autodiscover.xml") == [
        "https://mail.contoso.com"
    ]
