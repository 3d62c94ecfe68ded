"""Moving a server from EWS to Microsoft Graph: compare first, then switch in one step."""

from __future__ import annotations

import datetime as dt
import html as htmllib
from dataclasses import replace

import pytest
from django.contrib.auth.models import User
from django.test import Client

from accounts.models import AppRegistration, ServiceAccount
from connector.models import Alarm, Calendar, Filter, MailboxState, Resource, Server
from connector.services.graph_switch import (
    EventDiff,
    compare,
    diff_events,
    graph_base_uri_for,
    retirement_notice,
    switch_to_graph,
)
from tests.fakes.ews import FakeExchange
from tests.fakes.graph import FakeGraph
from tests.fixtures.feed import make_record
from tests.fixtures.users import TEST_PASSWORD


@pytest.fixture
def hall(ews_server: Server) -> Calendar:
    calendar = Calendar.objects.create(calendar_id="hall", server=ews_server, request_window=7)
    Resource.objects.create(calendar=calendar, address="room-a@contoso.com", position=0)
    Resource.objects.create(calendar=calendar, address="room-b@contoso.com", position=1)
    Filter.objects.create(calendar=calendar, subject="*##*")
    Alarm.objects.create(calendar=calendar, edge="end", related="day-end", offset=0)
    return calendar


@pytest.fixture(autouse=True)
def same_mailboxes(request: pytest.FixtureRequest) -> None:
    """Graph serves the very events EWS holds (one Exchange behind both, as in real life)."""
    if {"fake_ews", "fake_graph"} <= set(request.fixturenames):
        fake_ews: FakeExchange = request.getfixturevalue("fake_ews")
        fake_graph: FakeGraph = request.getfixturevalue("fake_graph")
        fake_graph.rooms = {
            mailbox: [replace(event) for event in events]
            for mailbox, events in fake_ews.mailboxes.items()
        }


@pytest.fixture
def admin(client: Client, admin_user: User) -> Client:
    client.login(username="admin", password=TEST_PASSWORD)
    return client


def test_compare_reads_both_ways_and_finds_the_same_events(
    hall: Calendar, app_registration: AppRegistration, fake_ews: FakeExchange, fake_graph: FakeGraph
) -> None:
    result = compare(hall, app_registration, base_uri=fake_graph.url)
    assert result.ews.ok and result.graph.ok, (result.ews.error, result.graph.error)
    assert result.same > 10
    assert result.diffs == [], result.diffs
    assert result.identical
    assert fake_ews.count_op("FindItem", mailbox="room-a@contoso.com") == 1
    assert len(fake_graph.calendar_view_requests("room-a@contoso.com")) >= 1
    # Nothing was saved: the server is still EWS.
    hall.server.refresh_from_db()
    assert hall.server.type == Server.Type.EWS


def test_compare_lists_missing_extra_and_changed_events(
    hall: Calendar, app_registration: AppRegistration, fake_ews: FakeExchange, fake_graph: FakeGraph
) -> None:
    room_a = fake_graph.rooms["room-a@contoso.com"]
    weekly = next(event for event in room_a if event.subject == "Weekly sync")
    weekly.location = "Room A (moved)"
    interview = next(e for e in fake_graph.rooms["room-b@contoso.com"] if e.subject == "Interview")
    fake_graph.rooms["room-b@contoso.com"].remove(interview)
    result = compare(hall, app_registration, base_uri=fake_graph.url)
    kinds = {(diff.kind, diff.subject) for diff in result.diffs}
    assert ("changed", "Weekly sync") in kinds
    assert ("missing", "Interview") in kinds
    assert len(result.diffs) == 2
    changed = next(diff for diff in result.diffs if diff.kind == "changed")
    assert changed.changes == (("location", "Room A", "Room A (moved)"),)
    assert not result.identical


def test_diff_events_by_room_uid_and_start() -> None:
    start = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    same = make_record("Same", uid="u1", start=start)
    moved = make_record("Moved", uid="u2", start=start)
    only_ews = make_record("Gone", uid="u3")
    only_graph = make_record("New", uid="u4")
    other_uid = make_record("Same look", uid="ews-style", start=start + dt.timedelta(hours=3))
    twin = make_record("Same look", uid="graph-style", start=start + dt.timedelta(hours=3))
    renamed = make_record("Renamed", uid="u2", start=start)
    count, diffs = diff_events(
        [same, moved, only_ews, other_uid], [same, renamed, only_graph, twin]
    )
    assert count == 2
    assert {(d.kind, d.subject) for d in diffs} == {
        ("changed", "Moved"),
        ("missing", "Gone"),
        ("extra", "New"),
    }
    changed = next(d for d in diffs if d.kind == "changed")
    assert changed == EventDiff(
        "changed", "room-a@contoso.com", changed.when, "Moved", (("subject", "Moved", "Renamed"),)
    )


def test_compare_page_shows_the_verdict_and_offers_the_switch(
    admin: Client,
    hall: Calendar,
    app_registration: AppRegistration,
    fake_ews: FakeExchange,
    fake_graph: FakeGraph,
) -> None:
    url = (
        f"/servers/exchange/compare/?app_registration={app_registration.pk}"
        f"&base_uri={fake_graph.url}&calendar=hall"
    )
    page = htmllib.unescape(admin.get(url).content.decode())
    assert 'id="verdict"' in page
    assert "the screens will show the same thing after the switch" in page
    assert "Switch exchange to Graph" in page


@pytest.mark.django_db(transaction=True)  # the console reads in a thread of its own
def test_switch_keeps_calendars_resources_filters_and_alarms(
    admin: Client,
    hall: Calendar,
    app_registration: AppRegistration,
    fake_ews: FakeExchange,
    fake_graph: FakeGraph,
) -> None:
    server = hall.server
    MailboxState.objects.create(server=server, mailbox="room-a@contoso.com", folder_id="AAMk")
    response = admin.post(
        "/servers/exchange/switch-to-graph/",
        {"app_registration": app_registration.pk, "base_uri": fake_graph.url},
    )
    assert response.status_code == 302
    server.refresh_from_db()
    assert server.type == Server.Type.GRAPH
    assert server.base_uri == fake_graph.url
    assert server.app_registration_id == app_registration.pk
    assert server.service_account_id is None
    assert server.server_id == "exchange"
    assert not MailboxState.objects.filter(server=server).exists()
    hall.refresh_from_db()
    assert hall.server_id == server.pk
    assert list(hall.resources.values_list("address", flat=True)) == [
        "room-a@contoso.com",
        "room-b@contoso.com",
    ]
    assert hall.filter.subject == "*##*"
    assert hall.alarms.get().related == "day-end"
    assert ServiceAccount.objects.filter(name="delegate").exists()  # kept, just unused
    # The calendar now reads through Graph, with the same filters.
    console = b"".join(admin.get("/console/hall/?format=text").streaming_content).decode()
    assert "Graph calendarView of room-a@contoso.com" in console
    assert "Result: OK" in console
    assert "<- filterSubject" in console


def test_switch_page_asks_only_for_the_app_registration(
    admin: Client, db: None, app_registration: AppRegistration
) -> None:
    Server.objects.create(
        server_id="o365",
        type="ews",
        base_uri="https://outlook.office365.us",
        app_registration=app_registration,
    )
    page = htmllib.unescape(admin.get("/servers/o365/switch-to-graph/").content.decode())
    assert f'<option value="{app_registration.pk}" selected>' in page
    assert 'value="https://graph.microsoft.us"' in page
    assert "1 April 2027" in page


def test_switch_refuses_a_server_that_is_not_ews(
    admin: Client, graph_server: Server, app_registration: AppRegistration
) -> None:
    response = admin.post(
        "/servers/graph/switch-to-graph/",
        {"app_registration": app_registration.pk, "base_uri": "https://graph.microsoft.com"},
    )
    assert response.status_code == 302
    graph_server.refresh_from_db()
    assert graph_server.type == Server.Type.GRAPH


def test_switch_function_picks_the_national_cloud(db: None) -> None:
    app = AppRegistration.objects.create(name="cn", tenant="t", client_id="c")
    server = Server.objects.create(
        server_id="cn", type="ews", base_uri="https://partner.outlook.cn", app_registration=app
    )
    switched = switch_to_graph(server, app)
    assert switched.base_uri == "https://microsoftgraph.chinacloudapi.cn"
    assert graph_base_uri_for("https://outlook.office365.com/EWS/Exchange.asmx") == (
        "https://graph.microsoft.com"
    )


def test_retirement_notice_follows_the_calendar() -> None:
    assert "is blocked from 1 October 2026" in retirement_notice(dt.date(2026, 9, 1))
    assert "Since 1 October 2026" in retirement_notice(dt.date(2026, 12, 1))
    assert "ended on 1 April 2027" in retirement_notice(dt.date(2027, 4, 1))
