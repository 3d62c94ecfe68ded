"""One Exchange Online seen through EWS+OAuth and through Graph gives the same records and feed.

The EWS fake and the Graph fake share one set of mailboxes, as one tenant's
Exchange answers both APIs; the two sources must not tell them apart.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from connector.core.records import EventRecord, Window
from connector.models import Calendar, Resource, Server
from connector.pipeline.build import build_calendar
from connector.sources import open_source
from tests.fakes.ews import FakeExchange
from tests.fakes.graph import FakeGraph
from tests.fakes.identity import FakeIdentityPlatform
from tests.fakes.rooms import FakeEvent

ROOMS = ("room-a@contoso.com", "room-b@contoso.com", "big-hall@contoso.com")


def fortnight() -> Window:
    start = dt.datetime.combine(dt.date.today(), dt.time(), tzinfo=dt.UTC) - dt.timedelta(hours=2)
    return Window(start, start + dt.timedelta(days=14))


def by_key(records: list[EventRecord]) -> dict[str, EventRecord]:
    keyed = {record.key: record for record in records}
    assert len(keyed) == len(records), "keys must be unique within a room"
    return keyed


@pytest.fixture
def one_exchange(fake_ews: FakeExchange, fake_graph: FakeGraph) -> dict[str, list[FakeEvent]]:
    fake_graph.rooms = fake_ews.mailboxes
    fake_graph.max_page_size = 8  # several Graph pages per room, occurrences on the later ones
    return fake_ews.mailboxes


@pytest.mark.parametrize("include_body", [False, True])
def test_every_record_is_equal_field_by_field(
    ews_oauth_server: Server,
    graph_server: Server,
    one_exchange: dict[str, list[FakeEvent]],
    include_body: bool,
) -> None:
    window = fortnight()
    bodies = []
    for room in ROOMS:
        through_ews = open_source(ews_oauth_server).fetch(room, window, include_body=include_body)
        through_graph = open_source(graph_server).fetch(room, window, include_body=include_body)
        ews, graph = by_key(through_ews), by_key(through_graph)
        assert ews.keys() == graph.keys()
        for key in ews:
            assert ews[key] == graph[key], key
        assert len(ews) > 1
        bodies += [record.body for record in through_graph]
    if include_body:
        assert "Line one\nLine two; with, punctuation \\ and ünïcödé" in bodies
    else:
        assert set(bodies) == {None}


def test_events_added_later_agree_too(
    ews_oauth_server: Server,
    graph_server: Server,
    fake_ews: FakeExchange,
    one_exchange: dict[str, list[FakeEvent]],
) -> None:
    today = dt.date.today()
    noon = dt.datetime.combine(today, dt.time(11, 0), tzinfo=dt.UTC)
    fake_ews.add_event(
        "room-b@contoso.com",
        FakeEvent(
            "Ωmega — 東京 review",
            noon + dt.timedelta(days=1),
            noon + dt.timedelta(days=3, hours=2),  # over several days
            location="Room B / Salle ß",
            sensitivity="Private",
            importance="Low",
            free_busy="Tentative",
            categories=("Red category",),
            organizer_name="Ünal Öztürk",
            organizer_email="unal@contoso.com",
        ),
    )
    window = fortnight()
    ews = by_key(open_source(ews_oauth_server).fetch("room-b@contoso.com", window))
    graph = by_key(open_source(graph_server).fetch("room-b@contoso.com", window))
    assert ews == graph
    assert any(r.subject == "Ωmega — 東京 review" for r in graph.values())


def test_the_same_feed_from_both(
    ews_oauth_server: Server,
    graph_server: Server,
    one_exchange: dict[str, list[FakeEvent]],
    fake_identity: FakeIdentityPlatform,
) -> None:
    now = dt.datetime.combine(dt.date.today(), dt.time(6, 0), tzinfo=dt.UTC)
    feeds = []
    for server in (ews_oauth_server, graph_server):
        calendar = Calendar.objects.create(
            calendar_id=f"lobby-{server.server_id}",
            server=server,
            label="Lobby",
            timezone="Europe/Paris",
            request_window=7,
        )
        for position, room in enumerate(ROOMS):
            Resource.objects.create(calendar=calendar, address=room, position=position)
        result = build_calendar(calendar, now=now)
        feeds.append(result.ics)
        assert result.resource_counts == {room: result.resource_counts[room] for room in ROOMS}
    assert feeds[0] == feeds[1]
    assert feeds[0].count("BEGIN:VEVENT") > 20
    # Two resources (EWS and Graph), one token each, for everything above.
    assert fake_identity.token_requests() == 2


def test_repeated_refreshes_need_no_new_tokens(
    ews_oauth_server: Server,
    graph_server: Server,
    one_exchange: dict[str, list[FakeEvent]],
    fake_identity: FakeIdentityPlatform,
    fake_ews: FakeExchange,
    fake_graph: FakeGraph,
) -> None:
    window = fortnight()
    rounds: list[Any] = []
    for _ in range(10):
        rounds.append(open_source(ews_oauth_server).fetch("room-a@contoso.com", window))
        rounds.append(open_source(graph_server).fetch("room-a@contoso.com", window))
    assert all(by_key(r) == by_key(rounds[0]) for r in rounds)
    assert fake_identity.token_requests() == 2
