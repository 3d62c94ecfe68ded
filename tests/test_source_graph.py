"""The Graph source reads room calendars from the fake Graph, every page, as EventRecords."""

from __future__ import annotations

import datetime as dt

import pytest
from prometheus_client import REGISTRY

from connector.core.errors import SourceError
from connector.core.records import EventRecord, Window
from connector.core.trace import Trace
from connector.models import Server
from connector.sources import open_source
from connector.sources.graph import GraphSource
from tests.fakes.graph import FakeGraph
from tests.fakes.identity import FakeIdentityPlatform
from tests.fakes.rooms import FakeEvent, overlapping
from tests.fixtures.identity import GRAPH_SECRET


def window_of(days: int = 14) -> Window:
    start = dt.datetime.combine(dt.date.today(), dt.time(), tzinfo=dt.UTC) - dt.timedelta(hours=3)
    return Window(start, start + dt.timedelta(days=days))


def expected_record(event: FakeEvent, room: str, *, body: bool = False) -> EventRecord:
    """What any source must make of a fake event (EWS and Graph alike)."""
    return EventRecord(
        uid=event.uid,
        occurrence_id=event.occurrence_id,
        resource=room,
        subject=event.subject,
        start=event.start,
        end=event.end,
        all_day=event.all_day,
        location=event.location,
        organizer_name=event.organizer_name,
        organizer_email=event.organizer_email,
        sensitivity=event.sensitivity,
        importance=event.importance,
        free_busy=event.free_busy,
        is_cancelled=event.is_cancelled,
        is_draft=event.is_draft,
        is_meeting=event.is_meeting,
        is_recurring=event.is_recurring,
        categories=event.categories,
        body=event.body if body else None,
        last_modified=event.last_modified,
    )


def by_key(records: list[EventRecord]) -> dict[str, EventRecord]:
    return {record.key: record for record in records}


def test_open_source_gives_the_graph_source(graph_server: Server) -> None:
    assert isinstance(open_source(graph_server), GraphSource)


def test_reads_every_page_including_occurrences_after_the_first(
    graph_server: Server, fake_graph: FakeGraph
) -> None:
    fake_graph.max_page_size = 8  # Graph may answer fewer items than $top asks for
    room = "room-a@contoso.com"
    window = window_of()
    expected = overlapping(fake_graph.rooms[room], window.start, window.end)

    records = GraphSource(graph_server).fetch(room, window)

    requests = fake_graph.calendar_view_requests(room)
    assert len(requests) == -(-len(expected) // 8) >= 3
    assert len(records) == len(expected)
    standups = [r for r in records if r.subject == "Daily stand-up"]
    assert len(standups) == 8 and all(r.is_recurring for r in standups)
    # The first page held no occurrence: a reader stopping there would lose them all.
    first_page_subjects = {r.subject for r in records[:8]}
    assert "Daily stand-up" not in first_page_subjects
    for request in requests:
        assert request.path.endswith("/calendarView/delta")  # change tracking from the start
        assert 'outlook.timezone="UTC"' in request.header("prefer")
        assert request.header("authorization").startswith("Bearer ")
        assert "$select" not in request.query  # calendarView/delta refuses it
    # The window goes in the round's first request; the next links carry it in their token.
    assert requests[0].arg("startDateTime") == window.start.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert requests[0].arg("endDateTime") == window.end.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert all(r.arg("$skiptoken") and not r.arg("startDateTime") for r in requests[1:])


def test_one_request_per_room_when_it_fits_a_page(
    graph_server: Server, fake_graph: FakeGraph
) -> None:
    room = "big-hall@contoso.com"
    window = window_of()
    records = GraphSource(graph_server).fetch(room, window)
    assert len(records) == len(overlapping(fake_graph.rooms[room], window.start, window.end)) > 10
    (request,) = fake_graph.calendar_view_requests(room)
    assert "odata.maxpagesize=100" in request.header("prefer")  # delta pages by Prefer


def test_records_match_the_rooms_events_field_by_field(
    graph_server: Server, fake_graph: FakeGraph
) -> None:
    window = window_of()
    for room in ("room-a@contoso.com", "room-b@contoso.com", "big-hall@contoso.com"):
        expected = [
            expected_record(e, room)
            for e in overlapping(fake_graph.rooms[room], window.start, window.end)
        ]
        records = GraphSource(graph_server).fetch(room, window)
        assert by_key(records) == by_key(expected)
        assert len(records) == len(by_key(records))  # keys unique within a room


def test_kinds_of_events_are_mapped(graph_server: Server, fake_graph: FakeGraph) -> None:
    records = {
        r.subject: r for r in GraphSource(graph_server).fetch("room-a@contoso.com", window_of())
    }
    assert records["Company holiday"].all_day is True
    assert isinstance(records["Company holiday"].start, dt.date)
    assert not isinstance(records["Company holiday"].start, dt.datetime)
    assert records["Offsite"].free_busy == "WorkingElsewhere"
    assert records["Doctor"].free_busy == "OOF"
    assert records["Doctor"].sensitivity == "Personal"
    assert records["Doctor"].is_meeting is False
    assert records["Merger talks"].sensitivity == "Confidential"
    assert records["Board meeting"].importance == "High"
    assert records["Cancelled review"].is_cancelled is True
    assert records["Draft agenda"].is_draft is True
    coffee = records['Coffee ☕ with Zoë & Jürgen; agenda: "Q3, Q4" <draft>']
    assert coffee.location == "Salle Éiffel, 2ᵉ étage"
    assert coffee.categories == ("Café", "Team, Alpha")
    assert coffee.free_busy == "Tentative"
    assert coffee.body is None
    late = records["Late session"]
    assert isinstance(late.start, dt.datetime) and late.start.tzinfo is not None
    assert late.start.utcoffset() == dt.timedelta(0)


def test_body_only_when_asked_as_text(graph_server: Server, fake_graph: FakeGraph) -> None:
    records = GraphSource(graph_server).fetch("room-a@contoso.com", window_of(), include_body=True)
    coffee = next(r for r in records if r.subject.startswith("Coffee"))
    assert coffee.body == "Line one\nLine two; with, punctuation \\ and ünïcödé"
    request = fake_graph.calendar_view_requests()[0]
    assert 'outlook.body-content-type="text"' in request.header("prefer")


def test_token_is_reused_across_refreshes(
    graph_server: Server, fake_graph: FakeGraph, fake_identity: FakeIdentityPlatform
) -> None:
    for _ in range(5):
        for room in ("room-a@contoso.com", "room-b@contoso.com"):
            GraphSource(graph_server).fetch(room, window_of())
    assert fake_identity.token_requests() == 1
    assert len(fake_graph.calendar_view_requests()) == 10


def test_trace_shows_token_and_pages(graph_server: Server, fake_graph: FakeGraph) -> None:
    fake_graph.max_page_size = 8
    trace = Trace()
    records = GraphSource(graph_server, trace=trace).fetch("room-a@contoso.com", window_of())
    assert [s.name for s in trace.steps] == ["token", "fetch"]
    fetch = trace.steps[1]
    assert fetch.data["pages"] == 3
    assert fetch.data["items"] == len(records)
    assert f"3 page(s), {len(records)} item(s)" in fetch.details[-1]
    assert GRAPH_SECRET not in repr(trace)


def test_requests_are_counted_per_upstream(graph_server: Server, fake_graph: FakeGraph) -> None:
    labels = {"upstream": graph_server.server_id, "outcome": "ok"}
    before = REGISTRY.get_sample_value("ews_calendar_exchange_requests_total", labels) or 0
    fake_graph.max_page_size = 8
    GraphSource(graph_server).fetch("room-a@contoso.com", window_of())
    after = REGISTRY.get_sample_value("ews_calendar_exchange_requests_total", labels)
    assert after - before == 3


def test_own_calendar_is_refused_with_a_hint(graph_server: Server, fake_graph: FakeGraph) -> None:
    with pytest.raises(SourceError) as excinfo:
        GraphSource(graph_server).fetch("", window_of())
    assert excinfo.value.code == "no-resource"
    assert "room mailbox" in excinfo.value.hint
    assert fake_graph.count() == 0


def test_upstream_key_is_shared_by_servers_of_one_app(
    graph_server: Server, fake_graph: FakeGraph
) -> None:
    twin = Server.objects.create(
        server_id="graph-twin",
        type=Server.Type.GRAPH,
        base_uri=fake_graph.url + "/",
        app_registration=graph_server.app_registration,
    )
    assert GraphSource(twin).upstream_key == GraphSource(graph_server).upstream_key
