"""The feed end to end against the fake on-premises Exchange (EWS, NTLM).

The fake holds tests.fakes.rooms: every kind of event (all-day, recurring,
private, cancelled, unicode, across midnight) in room-a, a shared meeting with
room-b. These check that what EWS says reaches the feed as the SPEC says.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.utils import timezone

from connector.services.refresh import FEED_RETRY_FIRST
from tests.fixtures.feed import by_summary, parse_feed, vevents

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("refresh_threads_joined"),
]

ROOM_A, ROOM_B = "room-a@contoso.com", "room-b@contoso.com"
PARIS = ZoneInfo("Europe/Paris")
COFFEE = 'Coffee ☕ with Zoë & Jürgen; agenda: "Q3, Q4" <draft>'


@pytest.fixture
def lobby(make_calendar, ews_server):  # type: ignore[no-untyped-def]
    return make_calendar(
        "lobby",
        server=ews_server,
        resources=(ROOM_A, ROOM_B),
        timezone="Europe/Paris",
        request_window=14,
        filters={"mask_sensitivity": "Private"},
    )


def feed(client, calendar_id: str = "lobby"):  # type: ignore[no-untyped-def]
    response = client.get(f"/ical/{calendar_id}.ics")
    assert response.status_code == 200, response.content
    return parse_feed(response.content)


def one(parsed, summary: str):  # type: ignore[no-untyped-def]
    found = by_summary(parsed, summary)
    assert len(found) == 1, f"{summary!r}: {len(found)} events"
    return found[0]


def test_fresh_snapshot_costs_no_exchange_request(client, lobby, fake_ews) -> None:  # type: ignore[no-untyped-def]
    feed(client)
    assert fake_ews.count_op("FindItem", mailbox=ROOM_A) == 1
    assert fake_ews.count_op("FindItem", mailbox=ROOM_B) == 1
    asked = len(fake_ews.requests)
    feed(client)
    with time_machine.travel(timezone.now() + dt.timedelta(seconds=290), tick=True):
        feed(client)
    assert len(fake_ews.requests) == asked


def test_what_exchange_says_reaches_the_feed(client, lobby, fake_ews) -> None:  # type: ignore[no-untyped-def]
    parsed = feed(client)
    rooms = {str(event["X-EWS-CALENDAR-RESOURCE"]) for event in vevents(parsed)}
    assert rooms == {ROOM_A, ROOM_B}

    board = by_summary(parsed, "Board meeting")
    assert len(board) == 2 and len({str(event["UID"]) for event in board}) == 2
    assert all(event.decoded("PRIORITY") == 1 for event in board)
    assert str(board[0]["ORGANIZER"]) == "mailto:bob@contoso.com"
    assert board[0]["ORGANIZER"].params["CN"] == "Bob Boss"
    assert {str(event["LOCATION"]) for event in board} == {"Room A", "Room B"}

    coffee = one(parsed, COFFEE)
    assert str(coffee["LOCATION"]) == "Salle Éiffel, 2ᵉ étage"
    assert str(coffee["STATUS"]) == "TENTATIVE"
    assert str(coffee["X-MICROSOFT-CDO-BUSYSTATUS"]) == "TENTATIVE"
    assert coffee.decoded("PRIORITY") == 9
    assert [str(c) for c in coffee["CATEGORIES"].cats] == ["Café", "Team, Alpha"]
    assert "DESCRIPTION" not in coffee  # include_body is off

    holiday = one(parsed, "Company holiday")
    assert isinstance(holiday.decoded("DTSTART"), dt.date)
    assert not isinstance(holiday.decoded("DTSTART"), dt.datetime)
    assert str(holiday["TRANSP"]) == "TRANSPARENT"
    assert "ORGANIZER" not in holiday

    sync = one(parsed, "Weekly sync")
    start = sync.decoded("DTSTART")
    assert start.utcoffset() == dt.timedelta(0)
    assert start.astimezone(PARIS).time() == dt.time(9, 0)
    assert "DTSTART:" in sync.to_ical().decode() and "Z\r\n" in sync.to_ical().decode()

    doctor = one(parsed, "Doctor")  # Personal, not masked in this calendar
    assert str(doctor["CLASS"]) == "PRIVATE"
    assert str(doctor["X-MICROSOFT-CDO-BUSYSTATUS"]) == "OOF"
    private = one(parsed, "Private")  # "Private chat", masked
    assert "ORGANIZER" not in private

    assert str(one(parsed, "Merger talks")["CLASS"]) == "CONFIDENTIAL"
    assert not by_summary(parsed, "Cancelled review")
    assert len(by_summary(parsed, "Daily stand-up")) == 8
    assert len(by_summary(parsed, "Yoga")) == 4


def test_filters_and_extensions_against_exchange(
    client, make_calendar, ews_server, fake_ews
) -> None:  # type: ignore[no-untyped-def]
    make_calendar(
        "strict",
        server=ews_server,
        resources=(ROOM_A,),
        request_window=14,
        filters={
            "is_draft": True,
            "is_meeting": True,
            "sensitivity": "Confidential",
            "importance": "Low",
            "subject": "*##*",
            "free_busy": "WorkingElsewhere",
            "mask_sensitivity": "",
        },
    )
    summaries = {str(event["SUMMARY"]) for event in vevents(feed(client, "strict"))}
    # Only plain appointments survive filterIsMeeting; then the others.
    assert summaries == {"Doctor", "Company holiday"}


def test_include_body_fills_description(client, make_calendar, ews_server, fake_ews) -> None:  # type: ignore[no-untyped-def]
    make_calendar(
        "with-body",
        server=ews_server,
        resources=(ROOM_A,),
        include_body=True,
        request_window=14,
        filters={"mask_sensitivity": ""},
    )
    coffee = one(feed(client, "with-body"), COFFEE)
    assert str(coffee["DESCRIPTION"]) == "Line one\nLine two; with, punctuation \\ and ünïcödé"


def test_label_replaces_the_location_of_exchange_events(
    client, make_calendar, ews_server, fake_ews
) -> None:  # type: ignore[no-untyped-def]
    make_calendar("labelled", server=ews_server, resources=(ROOM_A,), label="Salle du conseil")
    parsed = feed(client, "labelled")
    assert {str(event["LOCATION"]) for event in vevents(parsed)} == {"Salle du conseil"}
    assert str(parsed["X-WR-CALNAME"]) == "Salle du conseil"


def test_alarm_instants_against_exchange(client, make_calendar, ews_server, fake_ews) -> None:  # type: ignore[no-untyped-def]
    make_calendar(
        "alarms",
        server=ews_server,
        resources=(ROOM_A,),
        timezone="Europe/Paris",
        alarms={"start": ("event-start", -600), "end": ("event-end", 600)},
    )
    make_calendar(
        "day-alarms",
        server=ews_server,
        resources=(ROOM_A,),
        timezone="Europe/Paris",
        alarms={"start": ("day-start", 0), "end": ("day-end", 0)},
    )
    relative = one(feed(client, "alarms"), "Weekly sync")
    triggers = [alarm.decoded("TRIGGER") for alarm in relative.walk("VALARM")]
    assert triggers == [dt.timedelta(minutes=-10), dt.timedelta(minutes=10)]
    assert [alarm["TRIGGER"].params["RELATED"] for alarm in relative.walk("VALARM")] == [
        "START",
        "END",
    ]

    absolute = one(feed(client, "day-alarms"), "Weekly sync")
    day = absolute.decoded("DTSTART").astimezone(PARIS).date()
    triggers = [alarm.decoded("TRIGGER") for alarm in absolute.walk("VALARM")]
    assert triggers == [
        dt.datetime.combine(day, dt.time(0, 0), tzinfo=PARIS),
        dt.datetime.combine(day, dt.time(23, 59, 59), tzinfo=PARIS),
    ]
    assert all(trigger.utcoffset() == dt.timedelta(0) for trigger in triggers)
    late = one(feed(client, "day-alarms"), "Late session")  # 22:30 → 01:00 next day
    end_trigger = list(late.walk("VALARM"))[1].decoded("TRIGGER")
    assert end_trigger.astimezone(PARIS).date() == (late.decoded("DTEND").astimezone(PARIS).date())


def test_exchange_down_sends_the_cache_or_502(client, make_calendar, ews_server, fake_ews) -> None:  # type: ignore[no-untyped-def]
    make_calendar("cached", server=ews_server, resources=(ROOM_A,), send_cache_on_server_error=True)
    make_calendar("strict", server=ews_server, resources=(ROOM_B,))
    cached = client.get("/ical/cached.ics").content
    assert client.get("/ical/strict.ics").status_code == 200
    fake_ews.faults.down = True
    with time_machine.travel(timezone.now() + dt.timedelta(seconds=301), tick=True):
        served = client.get("/ical/cached.ics")
        refused = client.get("/ical/strict.ics")
    assert served.status_code == 200 and served.content == cached
    assert refused.status_code == 502
    assert refused["Content-Type"] == "text/plain; charset=utf-8"
    fake_ews.faults.down = False
    fake_ews.events(ROOM_B)[1].subject = "Interview (rescheduled)"
    # Past the feed's back-off after one failure, well within the 300 s period.
    back_up = dt.timedelta(seconds=301) + FEED_RETRY_FIRST + dt.timedelta(seconds=1)
    with time_machine.travel(timezone.now() + back_up, tick=True):
        back = client.get("/ical/strict.ics")
    assert back.status_code == 200
    assert by_summary(parse_feed(back.content), "Interview (rescheduled)")
