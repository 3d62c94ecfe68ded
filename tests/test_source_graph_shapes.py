"""The Graph source reads what real Graph sends, not only what our fake sent first.

Graph answers in the mailbox's zone (by its Windows name) when the Prefer header is not
honoured, leaves out properties, writes next links as users('...'), marks moved
occurrences as "exception" and unknown availability as "unknown".
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from connector.models import Server
from connector.sources.graph import GraphSource
from tests.fakes.graph import FakeGraph
from tests.fakes.rooms import overlapping
from tests.test_source_graph import by_key, expected_record, window_of

ROOM_A = "room-a@contoso.com"


def expected(fake: FakeGraph, room: str) -> dict[str, object]:
    window = window_of()
    return by_key(
        [expected_record(e, room) for e in overlapping(fake.rooms[room], window.start, window.end)]
    )


@pytest.mark.parametrize(
    "zone", ["W. Europe Standard Time", "Pacific Standard Time", "Tokyo Standard Time"]
)
def test_times_in_the_mailbox_zone_when_prefer_is_not_honoured(
    graph_server: Server, fake_graph: FakeGraph, zone: str
) -> None:
    fake_graph.answer_zone = zone
    records = GraphSource(graph_server).fetch(ROOM_A, window_of())
    assert by_key(records) == expected(fake_graph, ROOM_A)
    holiday = next(r for r in records if r.subject == "Company holiday")
    assert type(holiday.start) is dt.date and holiday.end - holiday.start == dt.timedelta(1)


@pytest.mark.parametrize(
    "name",
    [
        "organizer",
        "categories",
        "location",
        "sensitivity",
        "importance",
        "showAs",
        "isCancelled",
        "isDraft",
        "originalStart",
        "lastModifiedDateTime",
        "attendees",
        "iCalUId",
        "subject",
        "type",
        "isAllDay",
    ],
)
def test_an_event_without_an_optional_property_is_still_read(
    graph_server: Server, fake_graph: FakeGraph, name: str
) -> None:
    fake_graph.omitted = {name}
    records = GraphSource(graph_server).fetch(ROOM_A, window_of())
    assert len(records) == len(expected(fake_graph, ROOM_A))
    if name == "originalStart":
        stand_ups = [r for r in records if r.subject == "Daily stand-up"]
        assert len({r.occurrence_id for r in stand_ups}) == len(stand_ups) == 8
        assert all(r.occurrence_id for r in stand_ups)
    if name == "organizer":
        assert {(r.organizer_name, r.organizer_email) for r in records} == {("", "")}


def test_a_moved_occurrence_is_still_an_occurrence_of_its_series(
    graph_server: Server, fake_graph: FakeGraph
) -> None:
    moved = next(e for e in fake_graph.rooms[ROOM_A] if e.subject == "Daily stand-up")
    fake_graph.exceptions = {moved.item_id}
    records = by_key(GraphSource(graph_server).fetch(ROOM_A, window_of()))
    assert records == expected(fake_graph, ROOM_A)


def test_unknown_availability_is_no_data(graph_server: Server, fake_graph: FakeGraph) -> None:
    fake_graph.rooms[ROOM_A] = [
        dataclasses.replace(fake_graph.rooms[ROOM_A][0], free_busy="NoData")
    ]
    (record,) = GraphSource(graph_server).fetch(ROOM_A, window_of())
    assert record.free_busy == "NoData"


def test_next_links_in_graphs_own_form_are_followed(
    graph_server: Server, fake_graph: FakeGraph
) -> None:
    fake_graph.max_page_size = 5
    records = GraphSource(graph_server).fetch(ROOM_A, window_of())
    paths = [r.path for r in fake_graph.calendar_view_requests(ROOM_A)]
    assert by_key(records) == expected(fake_graph, ROOM_A)
    assert len(paths) > 2 and all("users('" in path for path in paths[1:])


def test_an_occurrence_moved_in_time_keeps_its_original_start(
    graph_server: Server, fake_graph: FakeGraph
) -> None:
    events = fake_graph.rooms[ROOM_A]
    index = next(i for i, e in enumerate(events) if e.subject == "Daily stand-up")
    moved = events[index]
    assert isinstance(moved.start, dt.datetime) and isinstance(moved.end, dt.datetime)
    events[index] = dataclasses.replace(
        moved, start=moved.start + dt.timedelta(hours=2), end=moved.end + dt.timedelta(hours=2)
    )
    records = GraphSource(graph_server).fetch(ROOM_A, window_of())
    assert by_key(records) == expected(fake_graph, ROOM_A)
    record = next(r for r in records if r.start == moved.start + dt.timedelta(hours=2))
    assert record.is_recurring and record.occurrence_id == moved.start.isoformat()
