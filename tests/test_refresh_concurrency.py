"""A refresh round reads rooms concurrently, up to each upstream's limit, and no more.

The fakes count the requests they are answering at once (``max_in_flight``) and
take ``work_time`` seconds over each, so a round over 24 rooms reaches the
limit exactly if, and only if, it reads rooms side by side. No timing is
asserted. The rounds run their reading threads with their own database
connections, hence the transactional database.
"""

from __future__ import annotations

import datetime as dt
import threading
from io import StringIO
from typing import Any
from urllib.parse import unquote

import pytest
from django.utils import timezone

from connector.services.refresh import refresh_calendars
from tests.fakes.ews import FakeExchange
from tests.fakes.graph import FakeGraph
from tests.fakes.identity import FakeIdentityPlatform
from tests.fakes.rooms import build_rooms
from tests.fixtures.exchange import EWS_DELEGATE
from tests.fixtures.identity import GRAPH_CLIENT_ID

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("refresh_threads_joined"),
]

ROOMS = [f"room-{number:02d}@contoso.com" for number in range(24)]


def events() -> list[Any]:
    return build_rooms(dt.date.today())["room-b@contoso.com"]


def calendars_of_two_rooms(make_calendar: Any, server: Any) -> list[Any]:
    """12 calendars of 2 rooms each: 24 distinct rooms."""
    return [
        make_calendar(f"pair-{number:02d}", server=server, resources=tuple(ROOMS[2 * number :][:2]))
        for number in range(12)
    ]


def ews_rooms(fake_ews: FakeExchange) -> None:
    for room in ROOMS:
        fake_ews.add_mailbox(room, events())
    fake_ews.grant(EWS_DELEGATE, *ROOMS)


def graph_rooms(fake_graph: FakeGraph) -> None:
    for room in ROOMS:
        fake_graph.rooms[room] = events()


def a_round(calendars: list[Any], minutes: int = 0) -> None:
    outcomes = refresh_calendars(calendars, now=timezone.now() + dt.timedelta(minutes=minutes))
    assert [outcome.line() for outcome in outcomes if not outcome.ok] == []


# --- EWS: 8 per account ---------------------------------------------------------------


def test_an_ews_round_reads_8_rooms_at_once_and_never_more(
    make_calendar: Any, ews_server: Any, fake_ews: FakeExchange
) -> None:
    ews_rooms(fake_ews)
    calendars = calendars_of_two_rooms(make_calendar, ews_server)
    fake_ews.work_time = 0.1

    a_round(calendars)

    assert fake_ews.max_in_flight == 8
    assert fake_ews.count_op("FindItem") == 24


def test_the_ews_limit_is_a_setting(
    make_calendar: Any, ews_server: Any, fake_ews: FakeExchange, settings: Any
) -> None:
    settings.EWS_MAX_CONCURRENCY = 3
    ews_rooms(fake_ews)
    calendars = calendars_of_two_rooms(make_calendar, ews_server)
    fake_ews.work_time = 0.1

    a_round(calendars)

    assert fake_ews.max_in_flight == 3


def test_after_warm_up_an_ews_round_costs_one_request_per_room(
    make_calendar: Any, ews_server: Any, fake_ews: FakeExchange
) -> None:
    ews_rooms(fake_ews)
    calendars = calendars_of_two_rooms(make_calendar, ews_server)
    a_round(calendars)  # learns the version, opens the connections
    fake_ews.clear_log()
    fake_ews.work_time = 0.05

    a_round(calendars, minutes=10)

    assert len(fake_ews.soap_requests()) == 24
    assert [op.operation for op in fake_ews.ops] == ["FindItem"] * 24
    assert sorted(mailbox for op in fake_ews.ops for mailbox in op.mailboxes) == ROOMS
    assert fake_ews.max_in_flight == 8


# --- Graph: 4 per app registration ----------------------------------------------------


def test_a_graph_round_reads_4_rooms_at_once_and_never_more(
    make_calendar: Any, graph_server: Any, fake_graph: FakeGraph
) -> None:
    graph_rooms(fake_graph)
    calendars = calendars_of_two_rooms(make_calendar, graph_server)
    fake_graph.work_time = 0.1

    a_round(calendars)

    assert fake_graph.max_in_flight[GRAPH_CLIENT_ID] == 4
    assert len(fake_graph.calendar_view_requests()) == 24


def test_one_token_request_per_app_registration_across_threads_and_rounds(
    make_calendar: Any,
    graph_server: Any,
    fake_graph: FakeGraph,
    fake_identity: FakeIdentityPlatform,
) -> None:
    graph_rooms(fake_graph)
    calendars = calendars_of_two_rooms(make_calendar, graph_server)
    fake_graph.work_time = 0.05

    a_round(calendars)  # four threads ask for the first token at once
    a_round(calendars, minutes=10)
    a_round(calendars, minutes=20)

    assert fake_identity.token_requests() == 1
    # One msal application for the app registration, not one per thread.
    openid = fake_identity.count(lambda request: request.path.endswith("openid-configuration"))
    assert openid == 1
    assert len(fake_graph.calendar_view_requests()) == 3 * 24


def test_a_room_shown_by_several_calendars_is_read_once_per_round(
    make_calendar: Any, graph_server: Any, fake_graph: FakeGraph
) -> None:
    graph_rooms(fake_graph)
    shared = ROOMS[0]
    calendars = [
        make_calendar(f"with-shared-{number}", server=graph_server, resources=(shared, room))
        for number, room in enumerate(ROOMS[1:9])
    ]
    calendars.append(make_calendar("only-shared", server=graph_server, resources=(shared,)))
    fake_graph.work_time = 0.05

    a_round(calendars)
    a_round(calendars, minutes=10)

    asked = [unquote(request.path) for request in fake_graph.calendar_view_requests()]
    assert sum(shared in path for path in asked) == 2  # once per round
    assert len(asked) == 2 * 9
    assert fake_graph.max_in_flight[GRAPH_CLIENT_ID] == 4


def test_each_upstream_has_its_own_limit(
    make_calendar: Any,
    graph_server: Any,
    fake_graph: FakeGraph,
    ews_server: Any,
    fake_ews: FakeExchange,
) -> None:
    ews_rooms(fake_ews)
    graph_rooms(fake_graph)
    calendars = calendars_of_two_rooms(make_calendar, ews_server)
    calendars += [
        make_calendar(f"graph-{number:02d}", server=graph_server, resources=(room,))
        for number, room in enumerate(ROOMS)
    ]
    fake_ews.work_time = fake_graph.work_time = 0.1
    seen: list[int] = []
    watching = threading.Event()

    def watch() -> None:  # both upstreams busy at the same moment
        while not watching.is_set():
            seen.append(fake_ews.in_flight + fake_graph.in_flight[GRAPH_CLIENT_ID])
            watching.wait(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        a_round(calendars)
    finally:
        watching.set()
        watcher.join()

    assert fake_ews.max_in_flight == 8
    assert fake_graph.max_in_flight[GRAPH_CLIENT_ID] == 4
    assert max(seen) > 8


# --- the command and the background dispatch: rounds that fill every slot -------------


def test_the_command_reads_8_rooms_at_once_over_calendars_of_two_rooms(
    make_calendar: Any, ews_server: Any, fake_ews: FakeExchange
) -> None:
    """Calendars sharing no room still go into one round per server: the command keeps the
    account's 8 slots busy, not the 2 rooms of one calendar at a time."""
    from django.core.management import call_command

    ews_rooms(fake_ews)
    calendars_of_two_rooms(make_calendar, ews_server)
    fake_ews.work_time = 0.1

    call_command("refresh_calendars", stdout=StringIO())

    assert fake_ews.max_in_flight == 8
    assert fake_ews.count_op("FindItem") == 24


def test_rounds_keep_shared_rooms_together_and_one_server_per_round(
    make_calendar: Any, ews_server: Any, graph_server: Any
) -> None:
    from connector.services.rounds import ROOMS_PER_SLOT, plan_rounds

    ews = calendars_of_two_rooms(make_calendar, ews_server)
    shared = make_calendar("shared", server=ews_server, resources=(ROOMS[0], ROOMS[5]))
    graph = [
        make_calendar(f"g-{number}", server=graph_server, resources=(ROOMS[number],))
        for number in range(3)
    ]

    rounds = plan_rounds([*ews, shared, *graph])

    assert [sorted(c.calendar_id for c in members) for members in rounds] == [
        sorted(c.calendar_id for c in [*ews, shared]),
        sorted(c.calendar_id for c in graph),
    ]
    assert ROOMS_PER_SLOT * 8 >= 24  # one round holds them all at the default limits


def test_a_server_with_more_rooms_than_a_round_holds_gets_several_rounds(
    make_calendar: Any, ews_server: Any, settings: Any
) -> None:
    from connector.services.rounds import ROOMS_PER_SLOT, plan_rounds

    settings.EWS_MAX_CONCURRENCY = 1  # a round of ROOMS_PER_SLOT rooms
    calendars = [
        make_calendar(f"room-{n:03d}", server=ews_server, resources=(f"r{n}@contoso.com",))
        for n in range(ROOMS_PER_SLOT + 1)
    ]

    rounds = plan_rounds(calendars)

    assert [len(members) for members in rounds] == [ROOMS_PER_SLOT, 1]
