"""Honest outages, room by room: one failing room, the others fresh.

A calendar with sendCacheOnServerError whose room fails while its other rooms
answer is rebuilt from the fresh rooms plus the failing room's last good
events, and /status/ says so, naming the room; without the flag, or without a
good copy of that room, the feed answers 502. The feed refreshes in a thread
it waits for, hence the transactional database.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from connector.models import RoomEvents, Snapshot
from connector.pipeline.room_events import dump_records, load_records
from connector.services.feed_state import feed_states
from tests.fakes.graph import FakeGraph
from tests.fakes.rooms import FakeEvent
from tests.fixtures.feed import make_record, parse_feed, vevents
from tests.fixtures.identity import GRAPH_CLIENT_ID
from tests.fixtures.users import TEST_PASSWORD

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("refresh_threads_joined"),
]

ROOM_A, ROOM_B = "room-a@contoso.com", "room-b@contoso.com"


def later(seconds: float) -> time_machine.travel:
    return time_machine.travel(timezone.now() + dt.timedelta(seconds=seconds), tick=True)


def feed(client: Client, calendar_id: str = "rooms") -> Any:
    return client.get(f"/ical/{calendar_id}.ics")


def by_room(content: bytes) -> dict[str, set[str]]:
    rooms: dict[str, set[str]] = {}
    for event in vevents(parse_feed(content)):
        rooms.setdefault(str(event["X-EWS-CALENDAR-RESOURCE"]), set()).add(str(event["SUMMARY"]))
    return rooms


def new_meeting_in(fake_graph: FakeGraph, room: str) -> None:
    """A meeting booked after the first read: only a fresh read of the room shows it."""
    start = timezone.now().replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=2)
    fake_graph.rooms[room].append(
        FakeEvent("Booked just now", start=start, end=start + dt.timedelta(hours=1))
    )


@pytest.fixture
def rooms_calendar(make_calendar: Any, graph_server: Any) -> Any:
    return make_calendar(
        "rooms",
        server=graph_server,
        resources=(ROOM_A, ROOM_B),
        cache_persistence=300,
        send_cache_on_server_error=True,
    )


def test_a_failing_room_is_shown_from_its_last_good_events_beside_the_fresh_rooms(
    client: Client, rooms_calendar: Any, fake_graph: FakeGraph
) -> None:
    first = feed(client)
    assert first.status_code == 200
    before = by_room(first.content)
    assert before[ROOM_A] and before[ROOM_B]

    fake_graph.block_by_access_policy(GRAPH_CLIENT_ID, ROOM_B)
    new_meeting_in(fake_graph, ROOM_A)
    with later(600):
        response = feed(client)

    assert response.status_code == 200
    after = by_room(response.content)
    assert after[ROOM_A] == before[ROOM_A] | {"Booked just now"}  # read now
    assert after[ROOM_B] == before[ROOM_B]  # its last good events
    (stale,) = Snapshot.objects.get(calendar=rooms_calendar).stale_rooms
    assert stale["address"] == ROOM_B
    row = RoomEvents.objects.get(address=ROOM_B)
    assert row.failing_since is not None and row.last_error_code
    assert stale["failing_since"] == row.failing_since.isoformat()


def test_status_says_partly_stale_and_names_the_failing_room(
    client: Client, rooms_calendar: Any, fake_graph: FakeGraph, staff_user: User
) -> None:
    assert feed(client).status_code == 200
    fake_graph.block_by_access_policy(GRAPH_CLIENT_ID, ROOM_B)
    with later(600):
        assert feed(client).status_code == 200

        state = feed_states()["rooms"]
        client.login(username="staff", password=TEST_PASSWORD)
        page = client.get("/status/").content.decode()

    assert state.state == "partly-stale"
    assert [room.address for room in state.stale_rooms] == [ROOM_B]
    assert f"room {ROOM_B} failing since" in state.text
    row = re.search(r'data-calendar="rooms".*?</tr>', page, re.S)
    assert row is not None
    assert "partly-stale" in row.group(0) and ROOM_B in row.group(0)


def test_the_room_back_makes_the_calendar_fresh_again(
    client: Client, rooms_calendar: Any, fake_graph: FakeGraph
) -> None:
    feed(client)
    fake_graph.block_by_access_policy(GRAPH_CLIENT_ID, ROOM_B)
    with later(600):
        feed(client)
    fake_graph.access_policy_blocked[GRAPH_CLIENT_ID].clear()
    with later(1200):
        assert feed(client).status_code == 200
        assert feed_states()["rooms"].state == "fresh"
    assert Snapshot.objects.get(calendar=rooms_calendar).stale_rooms == []
    assert RoomEvents.objects.get(address=ROOM_B).failing_since is None


def test_without_send_cache_a_failing_room_fails_the_calendar(
    client: Client, rooms_calendar: Any, fake_graph: FakeGraph
) -> None:
    rooms_calendar.send_cache_on_server_error = False
    rooms_calendar.save()
    assert feed(client).status_code == 200
    fake_graph.block_by_access_policy(GRAPH_CLIENT_ID, ROOM_B)
    with later(600):
        response = feed(client)
        state = feed_states()["rooms"]
    assert response.status_code == 502
    assert state.state == "502"


def test_a_failing_room_without_a_last_good_copy_fails_the_calendar(
    client: Client, rooms_calendar: Any, fake_graph: FakeGraph
) -> None:
    fake_graph.block_by_access_policy(GRAPH_CLIENT_ID, ROOM_B)
    response = feed(client)
    assert response.status_code == 502
    assert not Snapshot.objects.filter(calendar=rooms_calendar).exists()
    assert feed_states()["rooms"].state == "502"
    assert RoomEvents.objects.get(address=ROOM_B).failing_since is not None


def test_a_copy_read_for_a_shorter_window_does_not_stand_in(
    client: Client, make_calendar: Any, graph_server: Any, fake_graph: FakeGraph
) -> None:
    """Room B was last read for one day only: it must not look free on the days after."""
    make_calendar("today-b", server=graph_server, resources=(ROOM_B,), request_window=1)
    make_calendar(
        "fortnight",
        server=graph_server,
        resources=(ROOM_A, ROOM_B),
        request_window=14,
        send_cache_on_server_error=True,
    )
    assert feed(client, "today-b").status_code == 200
    fake_graph.block_by_access_policy(GRAPH_CLIENT_ID, ROOM_B)
    assert feed(client, "fortnight").status_code == 502


def test_when_every_room_fails_players_get_the_last_good_copy(
    client: Client, rooms_calendar: Any, fake_graph: FakeGraph
) -> None:
    good = feed(client)
    fake_graph.faults.down = True
    with later(600):
        response = feed(client)
        state = feed_states()["rooms"]
    assert response.content == good.content
    assert state.state == "last-good"
    assert state.text.startswith("Last good copy from ")


def test_records_survive_the_round_trip_through_the_database() -> None:
    records = [
        make_record("Timed", categories=("Blue", "Red"), extra=(("a", "b"),)),
        make_record(
            "All day",
            all_day=True,
            start=dt.date(2026, 3, 2),
            end=dt.date(2026, 3, 3),
            body="text",
            last_modified=dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC),
        ),
    ]
    assert load_records(dump_records(records)) == records


def test_a_calendar_made_in_the_admin_starts_with_send_cache_on(admin_client: Client) -> None:
    page = admin_client.get("/admin/connector/calendar/add/").content.decode()
    box = re.search(r'<input type="checkbox" name="send_cache_on_server_error"[^>]*>', page)
    assert box is not None and "checked" in box.group(0)
