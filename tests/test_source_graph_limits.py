"""Graph's limits: Retry-After is honoured, and at most 4 requests per app are in flight."""

from __future__ import annotations

import datetime as dt
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from connector.core.errors import SourceError
from connector.core.records import Window
from connector.core.trace import Trace
from connector.models import Server
from connector.sources.graph import GraphSource
from tests.fakes.graph import FakeGraph
from tests.fakes.rooms import build_rooms
from tests.fixtures.identity import GRAPH_CLIENT_ID

ROOM = "room-a@contoso.com"


def window() -> Window:
    start = dt.datetime.combine(dt.date.today(), dt.time(), tzinfo=dt.UTC)
    return Window(start, start + dt.timedelta(days=7))


def test_429_retry_after_is_honoured(graph_server: Server, fake_graph: FakeGraph) -> None:
    fake_graph.throttle_next(1, retry_after=1)
    trace = Trace()

    records = GraphSource(graph_server, trace=trace).fetch(ROOM, window())

    assert records
    first, second = fake_graph.calendar_view_requests(ROOM)
    assert second.received - first.received >= 1.0
    assert any("Retry-After" in note for note in trace.steps[-1].details)


def test_retry_after_beyond_the_refresh_bound_gives_up_at_once(
    graph_server: Server, fake_graph: FakeGraph
) -> None:
    fake_graph.throttle_next(1, retry_after=120)
    started = time.monotonic()
    with pytest.raises(SourceError) as excinfo:
        GraphSource(graph_server, deadline=started + 10).fetch(ROOM, window())
    assert time.monotonic() - started < 2
    assert excinfo.value.code == "throttled"
    assert excinfo.value.retryable is True
    assert len(fake_graph.calendar_view_requests()) == 1


def add_rooms(fake_graph: FakeGraph, count: int) -> list[str]:
    events = build_rooms(dt.date.today())["room-b@contoso.com"]
    rooms = [f"room-{n:02d}@contoso.com" for n in range(count)]
    for room in rooms:
        fake_graph.rooms[room] = events
    return rooms


def warm_token(server: Server) -> None:
    """Get the token in this thread: worker threads then find it in memory."""
    GraphSource(server).fetch("empty-room@contoso.com", window())


def fetch_all(servers: list[Server], rooms: list[str], *, warm: bool = True) -> list[int]:
    if warm:
        warm_token(servers[0])

    def one(index: int) -> int:
        server = servers[index % len(servers)]
        return len(GraphSource(server).fetch(rooms[index], window()))

    with ThreadPoolExecutor(max_workers=len(rooms)) as pool:
        return list(pool.map(one, range(len(rooms))))


def test_never_more_than_4_requests_in_flight_per_app(
    graph_server: Server, fake_graph: FakeGraph
) -> None:
    rooms = add_rooms(fake_graph, 12)
    fake_graph.work_time = 0.2

    started = time.monotonic()
    counts = fetch_all([graph_server], rooms)
    elapsed = time.monotonic() - started

    assert all(count > 0 for count in counts)
    assert fake_graph.max_in_flight[GRAPH_CLIENT_ID] == 4
    # 12 requests (and one warming the token), 4 at a time, 0.2 s each: at least 4 rounds.
    assert elapsed >= 0.8


def test_the_limit_is_shared_by_every_server_of_the_app(
    graph_server: Server, fake_graph: FakeGraph
) -> None:
    twin = Server.objects.create(
        server_id="graph-twin",
        type=Server.Type.GRAPH,
        base_uri=fake_graph.url,
        app_registration=graph_server.app_registration,
    )
    rooms = add_rooms(fake_graph, 12)
    fake_graph.work_time = 0.2
    fetch_all([graph_server, twin], rooms)
    assert fake_graph.max_in_flight[GRAPH_CLIENT_ID] == 4


def test_the_limit_is_a_setting(
    graph_server: Server, fake_graph: FakeGraph, settings: SettingsWrapper
) -> None:
    settings.GRAPH_MAX_CONCURRENCY = 6
    rooms = add_rooms(fake_graph, 12)
    fake_graph.work_time = 0.2
    fetch_all([graph_server], rooms)
    assert fake_graph.max_in_flight[GRAPH_CLIENT_ID] == 6


def test_a_throttled_request_waits_without_holding_a_slot(
    graph_server: Server, fake_graph: FakeGraph
) -> None:
    rooms = add_rooms(fake_graph, 8)
    fake_graph.work_time = 0.1
    warm_token(graph_server)
    fake_graph.clear_log()
    fake_graph.throttle_next(4, retry_after=1)  # the first four wait a second ...

    fetch_all([graph_server], rooms, warm=False)

    # ... and meanwhile the other four are served: 8 requests in the first half second.
    received = sorted(r.received for r in fake_graph.calendar_view_requests())
    assert len(received) == 12
    assert sum(1 for t in received if t - received[0] < 0.5) == 8
    assert fake_graph.max_in_flight[GRAPH_CLIENT_ID] == 4
