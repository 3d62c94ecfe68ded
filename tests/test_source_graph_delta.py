"""Graph rooms are read with change tracking: an unchanged room costs one small request.

The first read of a window runs a round of ``calendarView/delta`` and keeps its
deltaLink and events in the database (``GraphDeltaState``); later reads send
the deltaLink and apply only what changed. A new window starts a new round; a
token Graph no longer takes (410) or an answer that does not fit starts one
too; where Graph refuses change tracking, the plain calendarView is read. The
records are always those of a full read.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import zlib

import pytest
import requests

from accounts.tokens import acquire_token
from connector.core.errors import SourceError
from connector.core.records import EventRecord, Window
from connector.core.trace import Trace
from connector.models import GraphDeltaState, Server
from connector.sources.graph import GraphSource
from tests.fakes.graph import FakeGraph
from tests.fakes.rooms import FakeEvent, overlapping
from tests.fixtures.identity import GRAPH_CLIENT_ID, GRAPH_SECRET, TENANT
from tests.helpers_process import clean_env, manage, migrate_and_set_up
from tests.test_source_graph import by_key, expected_record

ROOM_A, ROOM_B, HALL = "room-a@contoso.com", "room-b@contoso.com", "big-hall@contoso.com"


def window_of(days: int = 14, *, shift: int = 0) -> Window:
    start = dt.datetime.combine(dt.date.today(), dt.time(), tzinfo=dt.UTC) - dt.timedelta(hours=3)
    start += dt.timedelta(days=shift)
    return Window(start, start + dt.timedelta(days=days))


def read(server: Server, room: str, window: Window, **kwargs: bool) -> dict[str, EventRecord]:
    """One refresh of a room, as a new process makes it: a new source object each time."""
    return by_key(GraphSource(server).fetch(room, window, **kwargs))


def expected(fake_graph: FakeGraph, room: str, window: Window, **kwargs: bool) -> dict:
    events = overlapping(fake_graph.rooms[room], window.start, window.end)
    return by_key([expected_record(e, room, **kwargs) for e in events])


def removed(item_id: str) -> dict[str, object]:
    """How a delta answer says an event left the window."""
    removal = {"reason": "deleted"}
    return {"@odata.type": "#microsoft.graph.event", "id": item_id, "@removed": removal}


def kinds(fake_graph: FakeGraph, room: str | None = None) -> list[str]:
    return [answer.kind for answer in fake_graph.answers_for(room)]


def test_an_unchanged_room_costs_one_request_that_returns_nothing(
    graph_server: Server, fake_graph: FakeGraph
) -> None:
    window = window_of()
    first = read(graph_server, HALL, window)
    assert first == expected(fake_graph, HALL, window)
    assert kinds(fake_graph) == ["delta"]  # a round from scratch, one page of 100

    fake_graph.clear_log()
    second = read(graph_server, HALL, window)

    assert second == first
    (answer,) = fake_graph.answers_for()
    assert answer.kind == "delta-token" and answer.status == 200
    assert answer.request.path.endswith("/calendarView/delta")
    assert answer.request.arg("$deltatoken")
    assert "startDateTime" not in answer.request.query  # the window is in the token
    assert answer.payload()["value"] == []
    assert "@odata.deltaLink" in answer.payload()
    assert answer.body_bytes < 500


def test_bytes_of_an_unchanged_room_against_a_full_read(
    graph_server: Server, fake_graph: FakeGraph, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bytes Graph sends per refresh of an unchanged room."""
    window = window_of()
    figures = []
    for room in (HALL, ROOM_A):
        # A full read as before change tracking: calendarView with $select.
        fake_graph.delta_supported = False
        fake_graph.clear_log()
        read(graph_server, room, window)
        assert [(a.kind, a.status) for a in fake_graph.answers_for()] == [
            ("delta", 400),
            ("calendarView", 200),
        ]
        view = fake_graph.answers_for()[-1].body_bytes

        fake_graph.delta_supported = True
        fake_graph.clear_log()
        read(graph_server, room, window)
        seed = fake_graph.response_bytes(room)

        fake_graph.clear_log()
        read(graph_server, room, window)
        unchanged = fake_graph.response_bytes(room)
        assert kinds(fake_graph) == ["delta-token"]

        events = len(expected(fake_graph, room, window))
        figures.append(f"{room}: {events} events, calendarView {view} B, delta round {seed} B, ")
        figures[-1] += f"unchanged {unchanged} B ({view / unchanged:.0f}x less than calendarView)"
        assert unchanged * 20 < view < seed
    with capsys.disabled():
        print("\n" + "\n".join(figures))


def test_added_changed_and_deleted_events_come_through_the_delta(
    graph_server: Server, fake_graph: FakeGraph
) -> None:
    window = window_of()
    read(graph_server, ROOM_A, window)
    events = fake_graph.rooms[ROOM_A]
    gone = next(e for e in events if e.subject == "Private chat")
    events.remove(gone)
    index = next(i for i, e in enumerate(events) if e.subject == "Weekly sync")
    events[index] = dataclasses.replace(
        events[index], subject="Weekly sync (moved)", sensitivity="Private", location="Room C"
    )
    start = dt.datetime.combine(dt.date.today() + dt.timedelta(days=2), dt.time(16), dt.UTC)
    events.append(FakeEvent("Added late", start, start + dt.timedelta(hours=1), body="Bring tea"))
    fake_graph.clear_log()

    records = read(graph_server, ROOM_A, window)

    assert records == expected(fake_graph, ROOM_A, window)
    subjects = {r.subject for r in records.values()}
    assert "Private chat" not in subjects
    assert {"Weekly sync (moved)", "Added late"} <= subjects
    assert next(r for r in records.values() if r.subject == "Weekly sync (moved)").location == (
        "Room C"
    )
    (answer,) = fake_graph.answers_for()
    assert answer.kind == "delta-token"
    # Graph answered the three changes only: two events and one @removed.
    value = answer.payload()["value"]
    assert isinstance(value, list)
    assert sorted(item.get("subject", "@removed") for item in value) == [
        "@removed",
        "Added late",
        "Weekly sync (moved)",
    ]


def test_many_changes_come_on_several_pages(graph_server: Server, fake_graph: FakeGraph) -> None:
    window = window_of()
    read(graph_server, HALL, window)
    hall = fake_graph.rooms[HALL]
    hall[:] = [dataclasses.replace(e, subject=e.subject + " (new)") for e in hall]
    fake_graph.max_page_size = 20
    fake_graph.clear_log()

    records = read(graph_server, HALL, window)

    assert records == expected(fake_graph, HALL, window)
    assert all(r.subject.endswith("(new)") for r in records.values())
    assert kinds(fake_graph) == ["delta-token"] + ["delta-page"] * (-(-len(records) // 20) - 1)


def test_changes_outside_the_window_are_no_events(
    graph_server: Server, fake_graph: FakeGraph
) -> None:
    """Graph reports changes outside a delta's window as @removed: nothing to show."""
    window = window_of(days=3)
    before = read(graph_server, ROOM_A, window)
    later = next(e for e in fake_graph.rooms[ROOM_A] if e.subject == "Late session")
    later.subject = "Late session (renamed)"  # on day 6, outside the window
    fake_graph.clear_log()

    records = read(graph_server, ROOM_A, window)

    assert records == before == expected(fake_graph, ROOM_A, window)
    (answer,) = fake_graph.answers_for()
    assert answer.kind == "delta-token"
    assert answer.payload()["value"] == [removed(later.item_id)]


def test_a_new_day_starts_a_new_round(graph_server: Server, fake_graph: FakeGraph) -> None:
    today, tomorrow = window_of(), window_of(shift=1)
    read(graph_server, ROOM_A, today)
    fake_graph.clear_log()

    records = read(graph_server, ROOM_A, tomorrow)

    assert records == expected(fake_graph, ROOM_A, tomorrow)
    (answer,) = fake_graph.answers_for()
    assert answer.kind == "delta"  # from scratch: a deltaLink cannot change its window
    assert answer.request.arg("startDateTime") == tomorrow.start.strftime("%Y-%m-%dT%H:%M:%SZ")
    windows = set(GraphDeltaState.objects.values_list("window_start", flat=True))
    assert windows == {today.start, tomorrow.start}
    fake_graph.clear_log()
    read(graph_server, ROOM_A, tomorrow)
    assert kinds(fake_graph) == ["delta-token"]


def test_the_rows_of_past_windows_go(graph_server: Server, fake_graph: FakeGraph) -> None:
    past = Window(dt.datetime(2026, 1, 5, tzinfo=dt.UTC), dt.datetime(2026, 1, 12, tzinfo=dt.UTC))
    read(graph_server, ROOM_A, past)
    assert GraphDeltaState.objects.count() == 1
    read(graph_server, ROOM_A, window_of())
    assert list(GraphDeltaState.objects.values_list("window_start", flat=True)) == [
        window_of().start
    ]


@pytest.mark.parametrize("fault", ["expired", "resync"])
def test_a_token_graph_no_longer_takes_means_a_full_read(
    graph_server: Server, fake_graph: FakeGraph, fault: str
) -> None:
    window = window_of()
    read(graph_server, ROOM_A, window)
    events = fake_graph.rooms[ROOM_A]
    events.remove(next(e for e in events if e.subject == "Doctor"))
    if fault == "expired":
        fake_graph.expire_delta_tokens()  # 410 syncStateNotFound
    else:
        fake_graph.require_resync()  # 410 resyncRequired with a Location
    fake_graph.clear_log()
    trace = Trace()

    records = by_key(GraphSource(graph_server, trace=trace).fetch(ROOM_A, window))

    assert records == expected(fake_graph, ROOM_A, window)
    assert "Doctor" not in {r.subject for r in records.values()}
    assert [(a.kind, a.status) for a in fake_graph.answers_for()] == [
        ("delta-token", 410),
        ("delta", 200),
    ]
    code = "syncStateNotFound" if fault == "expired" else "resyncRequired"
    assert any(f"410 {code}" in line for line in trace.steps[-1].details)
    assert trace.failed_step is None
    fake_graph.clear_log()
    assert read(graph_server, ROOM_A, window) == records
    assert kinds(fake_graph) == ["delta-token"]  # tracking again


def test_a_kept_state_that_does_not_decode_means_a_full_read(
    graph_server: Server, fake_graph: FakeGraph
) -> None:
    window = window_of()
    read(graph_server, ROOM_B, window)
    GraphDeltaState.objects.update(events=b"not zlib")
    fake_graph.clear_log()
    assert read(graph_server, ROOM_B, window) == expected(fake_graph, ROOM_B, window)
    assert kinds(fake_graph) == ["delta"]


def test_updates_with_only_what_changed_are_merged(
    graph_server: Server, fake_graph: FakeGraph
) -> None:
    window = window_of()
    fake_graph.partial_updates = True
    read(graph_server, ROOM_B, window)
    room = fake_graph.rooms[ROOM_B]
    index = next(i for i, e in enumerate(room) if e.subject == "Interview")
    room[index] = dataclasses.replace(room[index], subject="Interview (2nd round)")
    fake_graph.clear_log()

    records = read(graph_server, ROOM_B, window)

    assert records == expected(fake_graph, ROOM_B, window)
    (answer,) = fake_graph.answers_for()
    (item,) = answer.payload()["value"]  # type: ignore[misc]
    assert "start" not in item and item["subject"] == "Interview (2nd round)"


def test_a_change_that_does_not_fit_the_kept_events_means_a_full_read(
    graph_server: Server, fake_graph: FakeGraph
) -> None:
    """Graph sends part of an event the kept state lacks: read the room again."""
    window = window_of()
    fake_graph.partial_updates = True
    read(graph_server, ROOM_B, window)
    state = GraphDeltaState.objects.get()
    kept = json.loads(zlib.decompress(state.events))
    interview = next(i for i, e in kept.items() if e["subject"] == "Interview")
    del kept[interview]
    GraphDeltaState.objects.update(events=zlib.compress(json.dumps(kept).encode()))
    room = fake_graph.rooms[ROOM_B]
    index = next(i for i, e in enumerate(room) if e.subject == "Interview")
    room[index] = dataclasses.replace(room[index], subject="Interview (2nd round)")
    fake_graph.clear_log()
    trace = Trace()

    records = by_key(GraphSource(graph_server, trace=trace).fetch(ROOM_B, window))

    assert records == expected(fake_graph, ROOM_B, window)
    assert any("do not fit the kept events" in line for line in trace.steps[-1].details)
    assert kinds(fake_graph) == ["delta-token", "delta"]


def test_a_graph_without_change_tracking_is_read_by_calendar_view(
    graph_server: Server, fake_graph: FakeGraph
) -> None:
    fake_graph.delta_supported = False
    window = window_of()
    for include_body in (False, True):
        fake_graph.clear_log()
        records = read(graph_server, ROOM_A, window, include_body=include_body)
        assert records == expected(fake_graph, ROOM_A, window, body=include_body)
        view = fake_graph.answers_for()[-1].request
        assert view.path.endswith("/calendarView")
        select = view.arg("$select").split(",")
        assert "iCalUId" in select and ("body" in select) == include_body  # only what is needed
    assert not GraphDeltaState.objects.exists()


def test_descriptions_asked_later_start_a_round_that_keeps_them(
    graph_server: Server, fake_graph: FakeGraph
) -> None:
    window = window_of()
    read(graph_server, ROOM_A, window)
    assert GraphDeltaState.objects.get().with_bodies is False
    fake_graph.clear_log()

    with_bodies = read(graph_server, ROOM_A, window, include_body=True)
    without = read(graph_server, ROOM_A, window)

    assert with_bodies == expected(fake_graph, ROOM_A, window, body=True)
    assert without == expected(fake_graph, ROOM_A, window)
    assert kinds(fake_graph) == ["delta", "delta-token"]  # the round with bodies serves both
    coffee = next(r for r in with_bodies.values() if r.subject.startswith("Coffee"))
    assert coffee.body == "Line one\nLine two; with, punctuation \\ and ünïcödé"


def test_a_new_round_after_a_410_keeps_the_descriptions(
    graph_server: Server, fake_graph: FakeGraph
) -> None:
    window = window_of()
    read(graph_server, ROOM_A, window, include_body=True)
    fake_graph.expire_delta_tokens()
    read(graph_server, ROOM_A, window)  # a calendar without descriptions meets the 410
    assert GraphDeltaState.objects.get().with_bodies is True
    fake_graph.clear_log()
    assert read(graph_server, ROOM_A, window, include_body=True) == expected(
        fake_graph, ROOM_A, window, body=True
    )
    assert kinds(fake_graph) == ["delta-token"]


def test_the_kept_state_is_compact(graph_server: Server, fake_graph: FakeGraph) -> None:
    window = window_of()
    read(graph_server, HALL, window)
    delta_round = fake_graph.response_bytes()
    state = GraphDeltaState.objects.get()
    assert state.mailbox == HALL and state.event_count == len(expected(fake_graph, HALL, window))
    assert "$deltatoken=" in state.delta_link
    assert len(state.events) * 20 < delta_round  # only what a record needs, compressed
    assert GRAPH_SECRET not in state.delta_link


def test_another_app_registration_starts_its_own_round(
    graph_server: Server, fake_graph: FakeGraph
) -> None:
    window = window_of()
    read(graph_server, ROOM_A, window)
    app = graph_server.app_registration
    assert app is not None
    app.client_id = "99999999-2222-3333-4444-555555555555"
    app.save()
    fake_graph.identity.add_app(TENANT, app.client_id, GRAPH_SECRET)
    fake_graph.grant(app.client_id)
    fake_graph.clear_log()
    read(graph_server, ROOM_A, window)
    assert kinds(fake_graph) == ["delta"]


def test_a_refused_room_stays_refused_after_tracking_began(
    graph_server: Server, fake_graph: FakeGraph
) -> None:
    """A 403 on the deltaLink is the admin's to fix, not a reason to read again."""
    window = window_of()
    read(graph_server, ROOM_A, window)
    fake_graph.revoke(GRAPH_CLIENT_ID)
    fake_graph.clear_log()
    with pytest.raises(SourceError) as excinfo:
        read(graph_server, ROOM_A, window)
    assert excinfo.value.code == "ErrorAccessDenied"
    assert kinds(fake_graph) == ["delta-token"]


# -- the fake refuses what Graph refuses ---------------------------------------------


def get(fake_graph: FakeGraph, graph_server: Server, url: str, **params: str) -> requests.Response:
    app = graph_server.app_registration
    assert app is not None
    token = acquire_token(app, f"{fake_graph.url}/.default").token
    return requests.get(url, params=params, headers={"Authorization": f"Bearer {token}"})


@pytest.mark.parametrize("option", ["$select", "$filter", "$orderby", "$expand", "$search"])
def test_the_fake_refuses_query_options_delta_does_not_support(
    graph_server: Server, fake_graph: FakeGraph, option: str
) -> None:
    window = window_of()
    answer = get(
        fake_graph,
        graph_server,
        f"{fake_graph.url}/v1.0/users/{ROOM_A}/calendarView/delta",
        startDateTime=window.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        endDateTime=window.end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        **{option: "subject"},
    )
    assert answer.status_code == 400
    assert option in answer.json()["error"]["message"]


def test_the_fake_keeps_the_window_of_a_token(graph_server: Server, fake_graph: FakeGraph) -> None:
    window = window_of()
    read(graph_server, ROOM_A, window)
    link = GraphDeltaState.objects.get().delta_link
    other = window_of(shift=1)
    moved = get(
        fake_graph,
        graph_server,
        link,
        startDateTime=other.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        endDateTime=other.end.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    assert moved.status_code == 400
    unknown = get(fake_graph, graph_server, link.split("$deltatoken=")[0] + "$deltatoken=nope")
    assert unknown.status_code == 410
    assert unknown.json()["error"]["code"] == "syncStateNotFound"


# -- a new process --------------------------------------------------------------------

SETUP = """
import os
from accounts.models import AppRegistration
from connector.models import Calendar, Filter, Resource, Server

app = AppRegistration.objects.create(
    name="contoso", tenant=os.environ["T_TENANT"], client_id=os.environ["T_CLIENT_ID"],
    client_secret=os.environ["T_SECRET"], authority=os.environ["T_AUTHORITY"],
)
graph = Server.objects.create(
    server_id="graph", type="graph", base_uri=os.environ["T_GRAPH_URL"], app_registration=app
)
for calendar_id, rooms in (("lobby", ["room-a@contoso.com", "room-b@contoso.com"]),
                           ("hall", ["big-hall@contoso.com"])):
    calendar = Calendar.objects.create(calendar_id=calendar_id, server=graph)
    Filter.objects.create(calendar=calendar)
    for position, room in enumerate(rooms):
        Resource.objects.create(calendar=calendar, address=room, position=position)
"""


def test_a_new_process_continues_from_the_kept_delta_link(  # type: ignore[no-untyped-def]
    tmp_path, fake_identity, fake_graph
) -> None:
    env = clean_env(
        tmp_path,
        T_TENANT=TENANT,
        T_CLIENT_ID=GRAPH_CLIENT_ID,
        T_SECRET=GRAPH_SECRET,
        T_AUTHORITY=fake_identity.url,
        T_GRAPH_URL=fake_graph.url,
    )
    migrate_and_set_up(env, SETUP)
    first = manage(env, "refresh_calendars")
    assert first.returncode == 0, first.stdout + first.stderr
    assert sorted(kinds(fake_graph)) == ["delta"] * 3
    seeded = fake_graph.response_bytes()
    gone = fake_graph.rooms[HALL].pop(0)
    fake_graph.clear_log()

    second = manage(env, "refresh_calendars")

    assert second.returncode == 0, second.stdout + second.stderr
    assert all(": ok, " in line for line in second.stdout.splitlines()), second.stdout
    assert sorted(kinds(fake_graph)) == ["delta-token"] * 3  # one small request per room
    assert fake_graph.response_bytes() * 20 < seeded
    (changed,) = fake_graph.answers_for(HALL)
    assert changed.payload()["value"] == [removed(gone.item_id)]
