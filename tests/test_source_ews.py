"""The EWS source reads room calendars with every authentication and maps every field."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from connector.core.records import EventRecord, Window
from connector.models import Calendar, Server
from connector.sources import open_source
from connector.sources.ews import EwsSource, reset_pool
from tests.fakes.ews import FakeExchange
from tests.fakes.rooms import FakeEvent, overlapping
from tests.fixtures.exchange import EWS_DELEGATE, EWS_PASSWORD

ROOM_A = "room-a@contoso.com"
ROOM_B = "room-b@contoso.com"


def week() -> Window:
    start = dt.datetime.combine(dt.date.today(), dt.time(), tzinfo=dt.UTC)
    return Window(start, start + dt.timedelta(days=7))


def expected(fake: FakeExchange, mailbox: str, window: Window) -> list[tuple[Any, ...]]:
    """What the room holds in the window, as the fields a record must carry."""
    return [
        (
            event.uid,
            event.series_start.isoformat() if event.series_start else "",
            event.subject,
            event.start,
            event.end,
            event.all_day,
            event.location,
            event.organizer_name,
            event.organizer_email,
            event.sensitivity,
            event.importance,
            event.free_busy,
            event.is_cancelled,
            event.is_draft,
            event.is_meeting,
            event.is_recurring,
            event.categories,
        )
        for event in overlapping(fake.events(mailbox), window.start, window.end)
    ]


def fields(record: EventRecord) -> tuple[Any, ...]:
    return (
        record.uid,
        record.occurrence_id,
        record.subject,
        record.start,
        record.end,
        record.all_day,
        record.location,
        record.organizer_name,
        record.organizer_email,
        record.sensitivity,
        record.importance,
        record.free_busy,
        record.is_cancelled,
        record.is_draft,
        record.is_meeting,
        record.is_recurring,
        record.categories,
    )


def ews_server_for(fake: FakeExchange, username: str, password: str, scheme: str) -> Server:
    from accounts.models import ServiceAccount

    account = ServiceAccount.objects.create(
        name=f"sa-{scheme}", username=username, password=password
    )
    return Server.objects.create(
        server_id=f"exchange-{scheme}",
        type=Server.Type.EWS,
        base_uri=fake.url,
        http_scheme=scheme,
        service_account=account,
    )


def test_ntlm_delegate_reads_every_field_of_a_room(ews_server: Server, fake_ews: FakeExchange):
    window = week()
    records = open_source(ews_server).fetch(ROOM_A, window)

    assert [fields(r) for r in records] == expected(fake_ews, ROOM_A, window)
    assert {r.resource for r in records} == {ROOM_A}
    assert all(r.body is None for r in records)
    coffee = next(r for r in records if r.subject.startswith("Coffee"))
    assert coffee.categories == ("Café", "Team, Alpha")
    assert coffee.location == "Salle Éiffel, 2ᵉ étage"
    holiday = next(r for r in records if r.subject == "Company holiday")
    assert type(holiday.start) is dt.date and type(holiday.end) is dt.date
    assert holiday.end - holiday.start == dt.timedelta(days=1)
    timed = next(r for r in records if r.subject == "Weekly sync")
    assert timed.start.tzinfo is dt.UTC
    stand_ups = [r for r in records if r.subject == "Daily stand-up"]
    assert len({r.uid for r in stand_ups}) == 1
    assert len({r.occurrence_id for r in stand_ups}) == len(stand_ups) > 1
    assert [op.operation for op in fake_ews.ops] == ["ConvertId", "FindItem"]


@pytest.mark.parametrize("scheme", ["basic", "digest"])
def test_each_http_scheme_reads_a_room(db: None, scheme: str) -> None:
    # gssnegotiate (Kerberos) reads through a real KDC: tests/test_kerberos.py.
    with FakeExchange() as fake:
        fake.add_user("monitor@contoso.com", "fake-password-monitor", scheme, rooms=[ROOM_B])
        server = ews_server_for(fake, "monitor@contoso.com", "fake-password-monitor", scheme)
        try:
            records = open_source(server).fetch(ROOM_B, week())
        finally:
            reset_pool()
        sent = {r.header("Authorization").split(" ")[0] for r in fake.soap_requests()}
    assert [fields(r) for r in records] == expected(fake, ROOM_B, week())
    assert records
    assert sent - {""} == {{"basic": "Basic", "digest": "Digest"}[scheme]}


def test_a_calendars_own_credentials_replace_the_service_account(
    ews_server: Server, fake_ews: FakeExchange
) -> None:
    fake_ews.add_user("lobby@contoso.com", "fake-password-lobby", "ntlm", rooms=[ROOM_B])
    calendar = Calendar.objects.create(
        calendar_id="lobby",
        server=ews_server,
        username="lobby@contoso.com",
        password="fake-password-lobby",
    )
    own = open_source(ews_server, calendar=calendar)
    shared = open_source(ews_server)

    own.fetch(ROOM_B, week())
    assert {op.caller for op in fake_ews.ops} == {"lobby@contoso.com"}
    assert own.upstream_key != shared.upstream_key
    assert "fake-password" not in own.upstream_key


def test_no_resource_reads_the_accounts_own_calendar(ews_server: Server, fake_ews: FakeExchange):
    start = week().start + dt.timedelta(hours=10)
    fake_ews.set_events(
        EWS_DELEGATE, [FakeEvent("My own meeting", start, start + dt.timedelta(hours=1))]
    )
    records = open_source(ews_server).fetch("", week())

    assert [r.subject for r in records] == ["My own meeting"]
    assert records[0].resource == EWS_DELEGATE
    find = [r for r in fake_ews.soap_requests() if b"FindItem" in r.body][-1]
    assert b'DistinguishedFolderId Id="calendar"/>' in find.body  # no <t:Mailbox>


def test_bodies_cost_one_get_item_per_batch(ews_server: Server, fake_ews: FakeExchange) -> None:
    records = open_source(ews_server).fetch(ROOM_A, week(), include_body=True)

    coffee = next(r for r in records if r.subject.startswith("Coffee"))
    assert coffee.body == "Line one\nLine two; with, punctuation \\ and ünïcödé"
    assert all(r.body is not None for r in records)
    assert fake_ews.count_op("FindItem") == 1
    assert fake_ews.count_op("GetItem") == 1


def test_an_all_day_event_on_the_day_clocks_change_keeps_its_dates(
    ews_server: Server, fake_ews: FakeExchange
) -> None:
    # Clocks go forward in Paris on the last Sunday of March.
    year = dt.date.today().year + 1
    last_day = dt.date(year, 3, 31)
    change = last_day - dt.timedelta(days=(last_day.weekday() + 1) % 7)
    fake_ews.set_events(
        ROOM_A,
        [
            FakeEvent("Spring forward", change, change + dt.timedelta(days=1), all_day=True),
            FakeEvent(
                "Two days",
                change - dt.timedelta(days=1),
                change + dt.timedelta(days=1),
                all_day=True,
            ),
        ],
    )
    start = dt.datetime.combine(change - dt.timedelta(days=3), dt.time(), tzinfo=dt.UTC)
    records = open_source(ews_server).fetch(ROOM_A, Window(start, start + dt.timedelta(days=7)))

    dates = {r.subject: (r.start, r.end) for r in records}
    assert dates["Spring forward"] == (change, change + dt.timedelta(days=1))
    assert dates["Two days"] == (change - dt.timedelta(days=1), change + dt.timedelta(days=1))


def test_an_x500_organizer_address_is_no_email_until_the_item_is_read(
    ews_server: Server, fake_ews: FakeExchange
) -> None:
    fake_ews.organizer_smtp_in_find_item = False  # as Exchange Online answers FindItem
    source = open_source(ews_server)

    listed = source.fetch(ROOM_B, week())
    read = source.fetch(ROOM_B, week(), include_body=True)

    board = next(r for r in listed if r.subject == "Board meeting")
    assert (board.organizer_name, board.organizer_email) == ("Bob Boss", "")
    board = next(r for r in read if r.subject == "Board meeting")
    assert (board.organizer_name, board.organizer_email) == ("Bob Boss", "bob@contoso.com")


def test_a_localized_mailbox_is_read_by_its_distinguished_calendar(
    ews_server: Server, fake_ews: FakeExchange
) -> None:
    begin = week().start + dt.timedelta(days=1, hours=9)
    fake_ews.add_mailbox(
        "raum-berlin@contoso.com",
        [FakeEvent("Besprechung", begin, begin + dt.timedelta(hours=1))],
        locale="de",
    )
    fake_ews.grant(EWS_DELEGATE, "raum-berlin@contoso.com")

    records = open_source(ews_server).fetch("raum-berlin@contoso.com", week())

    assert [r.subject for r in records] == ["Besprechung"]
    assert fake_ews.count_op("GetFolder") == 0
    assert not any(b"Calendar</" in r.body or b"Kalender" in r.body for r in fake_ews.requests)


def test_the_app_impersonates_each_room_with_one_token(
    ews_oauth_server: Server, fake_ews: FakeExchange, fake_identity: Any
) -> None:
    source = open_source(ews_oauth_server)
    for _ in range(3):
        a = source.fetch(ROOM_A, week())
        b = source.fetch(ROOM_B, week())
    reset_pool()  # a new process: the token comes from the shared (database) cache
    open_source(Server.objects.get(pk=ews_oauth_server.pk)).fetch(ROOM_A, week())

    assert [fields(r) for r in a] == expected(fake_ews, ROOM_A, week())
    assert [fields(r) for r in b] == expected(fake_ews, ROOM_B, week())
    finds = [op for op in fake_ews.ops if op.operation == "FindItem"]
    assert {(op.caller, op.impersonate) for op in finds} == {
        ("app", ROOM_A),
        ("app", ROOM_B),
    }
    assert fake_identity.token_requests() == 1
    assert all(r.header("Authorization").startswith("Bearer ") for r in fake_ews.soap_requests())


def test_ews_with_oauth_and_graph_give_the_same_records(
    ews_oauth_server: Server, fake_ews: FakeExchange, graph_server: Server, fake_graph: Any
) -> None:
    fake_graph.rooms = fake_ews.mailboxes  # one Exchange, seen through both APIs
    window = week()
    for room in (ROOM_A, ROOM_B, "big-hall@contoso.com"):
        through_ews = open_source(ews_oauth_server).fetch(room, window)
        through_graph = open_source(graph_server).fetch(room, window)
        # Graph lists single events before the occurrences of series; EWS by start.
        assert sorted(through_ews, key=str) == sorted(through_graph, key=str)
        assert len(through_ews) > 1


def test_the_source_class_is_what_open_source_gives(ews_server: Server) -> None:
    assert isinstance(open_source(ews_server), EwsSource)


def test_no_password_appears_in_the_upstream_key(ews_server: Server) -> None:
    key = open_source(ews_server).upstream_key
    assert EWS_PASSWORD not in key and key.startswith(f"ews:{ews_server.pk}:")
