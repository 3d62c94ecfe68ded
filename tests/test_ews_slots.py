"""An EWS read holds its account's place (EWS_MAX_CONCURRENCY) only while it talks to Exchange.

The place is taken as a request goes out and given back once its answer is read
in full: the answer is parsed into records while another room's request uses
the place. A read that finds every place busy until its deadline fails plainly.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import pytest

from connector.core.errors import SourceError
from connector.core.records import Window
from connector.models import Server
from connector.sources import open_source
from connector.sources.ews import mapping, pool, protocol, slots
from tests.fakes.ews import FakeExchange

ROOM_A = "room-a@contoso.com"


def today() -> Window:
    start = dt.datetime.combine(dt.date.today(), dt.time(), tzinfo=dt.UTC)
    return Window(start, start + dt.timedelta(days=1))


def test_answers_are_parsed_after_the_place_is_given_back(
    ews_server: Server, fake_ews: FakeExchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = open_source(ews_server)
    places = pool.semaphore(source.upstream_key)
    held_while_parsing: list[bool] = []
    free_while_parsing: list[int] = []

    def watched(elem: Any) -> Any:
        slot = slots.current.get()
        held_while_parsing.append(slot is not None and slot.held)
        free_while_parsing.append(places._value)  # type: ignore[attr-defined]
        return mapping.found_item(elem)

    monkeypatch.setattr(protocol, "found_item", watched)
    records = source.fetch(ROOM_A, today())

    assert records and len(held_while_parsing) == len(records)
    assert not any(held_while_parsing)
    limit = pool.settings.EWS_MAX_CONCURRENCY
    assert set(free_while_parsing) == {limit}  # every place free while this read parses
    assert places._value == limit  # type: ignore[attr-defined]


def test_a_read_waits_for_a_place_and_fails_plainly_at_its_deadline(
    ews_server: Server, fake_ews: FakeExchange, settings: Any
) -> None:
    settings.REFRESH_TIMEOUT = 0.5
    source = open_source(ews_server)
    places = pool.semaphore(source.upstream_key)
    taken = 0
    while places.acquire(blocking=False):  # another round holds every place
        taken += 1
    try:
        started = time.monotonic()
        with pytest.raises(SourceError) as caught:
            source.fetch(ROOM_A, today())
        assert caught.value.code == "concurrency"
        assert caught.value.resource == ROOM_A
        assert "EWS_MAX_CONCURRENCY" in caught.value.hint
        assert 0.4 < time.monotonic() - started < 5
        assert fake_ews.requests == []  # nothing was sent without a place
    finally:
        for _ in range(taken):
            places.release()


@pytest.mark.django_db(transaction=True)  # the waiting read writes from its own thread
def test_a_place_given_back_lets_a_waiting_read_go_on(
    ews_server: Server, fake_ews: FakeExchange
) -> None:
    source = open_source(ews_server)
    places = pool.semaphore(source.upstream_key)
    taken = 0
    while places.acquire(blocking=False):
        taken += 1
    results: list[Any] = []
    reader = threading.Thread(target=lambda: results.append(source.fetch(ROOM_A, today())))
    reader.start()
    reader.join(0.3)
    assert reader.is_alive() and fake_ews.requests == []  # waiting for a place
    places.release()
    taken -= 1
    reader.join(10)
    for _ in range(taken):
        places.release()
    assert not reader.is_alive() and results and results[0]
