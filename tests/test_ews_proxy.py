"""An outbound proxy (HTTPS_PROXY, NO_PROXY) carries EWS requests as requests would.

The EWS sessions read the proxy variables once, when a session is made, instead
of walking the process environment on every request; what they decide must not
change: a proxied Exchange is reached through the proxy's tunnel, an Exchange
named in NO_PROXY directly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from connector.core.records import Window
from connector.models import Server
from connector.sources import open_source
from connector.sources.ews import reset_pool
from tests.fakes.ews import FakeExchange
from tests.fakes.proxy import FakeProxy

ROOM_A = "room-a@contoso.com"
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")
PROXY_VARIABLES += ("all_proxy", "NO_PROXY", "no_proxy")


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeProxy]:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    fake = FakeProxy().start()
    reset_pool()  # sessions made before the variables were set would not know them
    yield fake
    fake.stop()
    reset_pool()


def today() -> Window:
    start = dt.datetime.combine(dt.date.today(), dt.time(), tzinfo=dt.UTC)
    return Window(start, start + dt.timedelta(days=1))


def test_https_proxy_carries_every_request_to_exchange(
    ews_server: Server, fake_ews: FakeExchange, proxy: FakeProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    source = open_source(ews_server)
    first = source.fetch(ROOM_A, today())
    second = source.fetch(ROOM_A, today())  # the same pooled session, still proxied

    assert first == second
    origin = urlsplit(fake_ews.url).netloc
    assert proxy.targets and set(proxy.targets) == {origin}
    assert len(fake_ews.requests) >= 2


def test_no_proxy_reaches_exchange_directly(
    ews_server: Server, fake_ews: FakeExchange, proxy: FakeProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    records = open_source(ews_server).fetch(ROOM_A, today())

    assert proxy.targets == []
    assert isinstance(records, list) and fake_ews.requests
