"""The iCalendar a calendar produces: every property rule of the SPEC's feed section.

These run the real pipeline (build_calendar) on records given directly; the
feed tests run it against the fake Exchange.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from connector.pipeline.build import build_calendar
from connector.pipeline.ics_writer import FeedEvent, FeedInfo, build_ics, event_uid
from tests.fixtures.feed import by_summary, make_record, parse_feed, vevents

UTC = dt.UTC
NOW = dt.datetime(2026, 3, 2, 6, 0, tzinfo=UTC)  # Monday 07:00 in Paris
ROOM_A, ROOM_B = "room-a@contoso.com", "room-b@contoso.com"


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 3, day, hour, minute, tzinfo=UTC)


def feed(calendar, records: dict, *, now: dt.datetime = NOW):  # type: ignore[no-untyped-def]
    result = build_calendar(calendar, records=records, now=now)
    return result, parse_feed(result.ics)


@pytest.fixture
def paris_room(make_calendar):  # type: ignore[no-untyped-def]
    return make_calendar(
        "paris",
        resources=(ROOM_A, ROOM_B),
        timezone="Europe/Paris",
        filters={"mask_sensitivity": ""},
    )


def test_calendar_properties(paris_room) -> None:  # type: ignore[no-untyped-def]
    paris_room.label = "Salle A"
    paris_room.cache_persistence = 300
    _, parsed = feed(paris_room, {ROOM_A: [], ROOM_B: []})
    assert str(parsed["VERSION"]) == "2.0"
    assert "ews-calendar" in str(parsed["PRODID"])
    assert str(parsed["X-WR-CALNAME"]) == "Salle A"
    text = parsed.to_ical().decode()
    assert "REFRESH-INTERVAL;VALUE=DURATION:PT5M" in text
    assert "X-PUBLISHED-TTL:PT5M" in text


def test_calendar_name_defaults_to_id(paris_room) -> None:  # type: ignore[no-untyped-def]
    _, parsed = feed(paris_room, {ROOM_A: [], ROOM_B: []})
    assert str(parsed["X-WR-CALNAME"]) == "paris"


def test_live_calendar_still_advertises_a_one_minute_refresh(paris_room) -> None:  # type: ignore[no-untyped-def]
    paris_room.cache_persistence = 0
    result, _ = feed(paris_room, {ROOM_A: [], ROOM_B: []})
    assert "REFRESH-INTERVAL;VALUE=DURATION:PT1M" in result.ics


def test_resources_are_merged_and_each_event_names_its_room(paris_room) -> None:  # type: ignore[no-untyped-def]
    records = {
        ROOM_A: [make_record("In A", resource=ROOM_A, start=at(2, 8), end=at(2, 9))],
        ROOM_B: [make_record("In B", resource=ROOM_B, start=at(2, 10), end=at(2, 11))],
    }
    result, parsed = feed(paris_room, records)
    assert result.resource_counts == {ROOM_A: 1, ROOM_B: 1}
    (in_a,) = by_summary(parsed, "In A")
    (in_b,) = by_summary(parsed, "In B")
    assert str(in_a["X-EWS-CALENDAR-RESOURCE"]) == ROOM_A
    assert str(in_b["X-EWS-CALENDAR-RESOURCE"]) == ROOM_B
    assert ROOM_B in in_b["RESOURCES"].to_ical().decode()


def test_same_meeting_in_two_rooms_appears_once_per_room(paris_room) -> None:  # type: ignore[no-untyped-def]
    shared = {
        "uid": "040000008200E00074C5B7101A82E008-shared",
        "start": at(2, 13),
        "end": at(2, 15),
    }
    records = {
        ROOM_A: [make_record("Board", resource=ROOM_A, **shared)],
        ROOM_B: [make_record("Board", resource=ROOM_B, **shared)],
    }
    _, parsed = feed(paris_room, records)
    boards = by_summary(parsed, "Board")
    assert len(boards) == 2
    assert len({str(event["UID"]) for event in boards}) == 2
    assert {str(event["X-EWS-CALENDAR-RESOURCE"]) for event in boards} == {ROOM_A, ROOM_B}


def test_occurrences_of_a_series_have_unique_uids_stable_across_refreshes(paris_room) -> None:  # type: ignore[no-untyped-def]
    def occurrences() -> list:
        return [
            make_record(
                "Stand-up",
                uid="series-1",
                occurrence_id=at(day, 7).isoformat(),
                is_recurring=True,
                start=at(day, 7),
                end=at(day, 7, 15),
            )
            for day in (2, 3, 4)
        ]

    _, first = feed(paris_room, {ROOM_A: occurrences(), ROOM_B: []})
    _, again = feed(
        paris_room, {ROOM_A: occurrences(), ROOM_B: []}, now=NOW + dt.timedelta(hours=1)
    )
    uids = [str(event["UID"]) for event in by_summary(first, "Stand-up")]
    assert len(set(uids)) == 3
    assert uids == [str(event["UID"]) for event in by_summary(again, "Stand-up")]
    assert "RECURRENCE-ID" not in first.to_ical().decode()


def test_same_records_give_byte_identical_feeds(paris_room) -> None:  # type: ignore[no-untyped-def]
    records = {ROOM_A: [make_record("A", start=at(2, 8), end=at(2, 9))], ROOM_B: []}
    first = build_calendar(paris_room, records=records, now=NOW)
    later = build_calendar(paris_room, records=records, now=NOW + dt.timedelta(minutes=5))
    assert first.ics == later.ics


def test_timed_events_are_utc_and_all_day_events_are_dates(paris_room) -> None:  # type: ignore[no-untyped-def]
    paris = ZoneInfo("Europe/Paris")
    records = {
        ROOM_A: [
            make_record(
                "Timed",
                start=dt.datetime(2026, 3, 2, 14, 0, tzinfo=paris),
                end=dt.datetime(2026, 3, 2, 15, 0, tzinfo=paris),
            ),
            make_record(
                "Holiday", all_day=True, start=dt.date(2026, 3, 4), end=dt.date(2026, 3, 5)
            ),
        ],
        ROOM_B: [],
    }
    result, parsed = feed(paris_room, records)
    assert "DTSTART:20260302T130000Z" in result.ics
    assert "DTEND:20260302T140000Z" in result.ics
    assert "DTSTART;VALUE=DATE:20260304" in result.ics
    assert "DTEND;VALUE=DATE:20260305" in result.ics
    (holiday,) = by_summary(parsed, "Holiday")
    assert holiday.decoded("DTSTART") == dt.date(2026, 3, 4)


def test_summary_location_organizer_and_dtstamp(paris_room) -> None:  # type: ignore[no-untyped-def]
    modified = dt.datetime(2026, 2, 20, 10, 0, tzinfo=UTC)
    records = {
        ROOM_A: [
            make_record(
                'Coffee ☕ with Zoë; agenda: "Q3, Q4"',
                location="Salle Éiffel",
                organizer_name="Bob Boss",
                organizer_email="bob@contoso.com",
                last_modified=modified,
                start=at(2, 9),
                end=at(2, 10),
            ),
            make_record("No change time", start=at(2, 11), end=at(2, 12)),
        ],
        ROOM_B: [],
    }
    _, parsed = feed(paris_room, records)
    (coffee,) = by_summary(parsed, 'Coffee ☕ with Zoë; agenda: "Q3, Q4"')
    assert str(coffee["LOCATION"]) == "Salle Éiffel"
    assert str(coffee["ORGANIZER"]) == "mailto:bob@contoso.com"
    assert coffee["ORGANIZER"].params["CN"] == "Bob Boss"
    assert coffee.decoded("DTSTAMP") == modified
    (other,) = by_summary(parsed, "No change time")
    # Without a change time, DTSTAMP is the start of the window: stable within a day.
    assert other.decoded("DTSTAMP") == paris_room.window(NOW).start


def test_label_replaces_every_location(paris_room) -> None:  # type: ignore[no-untyped-def]
    paris_room.label = "Meeting room 1"
    records = {
        ROOM_A: [make_record("With", location="Room A"), make_record("Without", location="")],
        ROOM_B: [],
    }
    _, parsed = feed(paris_room, records)
    assert {str(event["LOCATION"]) for event in vevents(parsed)} == {"Meeting room 1"}


@pytest.mark.parametrize(
    ("sensitivity", "klass"),
    [
        ("Normal", "PUBLIC"),
        ("Personal", "PRIVATE"),
        ("Private", "PRIVATE"),
        ("Confidential", "CONFIDENTIAL"),
    ],
)
def test_class_from_sensitivity(paris_room, sensitivity: str, klass: str) -> None:  # type: ignore[no-untyped-def]
    _, parsed = feed(paris_room, {ROOM_A: [make_record(sensitivity=sensitivity)], ROOM_B: []})
    assert str(vevents(parsed)[0]["CLASS"]) == klass


@pytest.mark.parametrize(("importance", "priority"), [("High", 1), ("Normal", 5), ("Low", 9)])
def test_priority_from_importance(paris_room, importance: str, priority: int) -> None:  # type: ignore[no-untyped-def]
    _, parsed = feed(paris_room, {ROOM_A: [make_record(importance=importance)], ROOM_B: []})
    assert vevents(parsed)[0].decoded("PRIORITY") == priority


@pytest.mark.parametrize(
    ("free_busy", "transp", "busy", "status"),
    [
        ("Free", "TRANSPARENT", "FREE", "CONFIRMED"),
        ("Tentative", "OPAQUE", "TENTATIVE", "TENTATIVE"),
        ("Busy", "OPAQUE", "BUSY", "CONFIRMED"),
        ("OOF", "OPAQUE", "OOF", "CONFIRMED"),
        ("WorkingElsewhere", "OPAQUE", "WORKINGELSEWHERE", "CONFIRMED"),
    ],
)
def test_transp_busy_status_and_status_from_free_busy(  # type: ignore[no-untyped-def]
    paris_room, free_busy: str, transp: str, busy: str, status: str
) -> None:
    _, parsed = feed(paris_room, {ROOM_A: [make_record(free_busy=free_busy)], ROOM_B: []})
    event = vevents(parsed)[0]
    assert str(event["TRANSP"]) == transp
    assert str(event["X-MICROSOFT-CDO-BUSYSTATUS"]) == busy
    assert str(event["STATUS"]) == status


def test_cancelled_event_kept_by_choice_says_cancelled(make_calendar) -> None:  # type: ignore[no-untyped-def]
    calendar = make_calendar(filters={"is_cancelled": False})
    _, parsed = feed(calendar, {ROOM_A: [make_record(is_cancelled=True)]})
    assert str(vevents(parsed)[0]["STATUS"]) == "CANCELLED"


def test_categories_are_listed(paris_room) -> None:  # type: ignore[no-untyped-def]
    record = make_record(categories=("Café", "Team, Alpha"))
    result, parsed = feed(paris_room, {ROOM_A: [record], ROOM_B: []})
    assert "CATEGORIES:Café,Team\\, Alpha" in result.ics
    assert [str(c) for c in vevents(parsed)[0]["CATEGORIES"].cats] == ["Café", "Team, Alpha"]


def test_description_only_when_include_body(make_calendar) -> None:  # type: ignore[no-untyped-def]
    record = make_record(body="Line one\nLine two; with, punctuation \\ and ünïcödé")
    without = make_calendar("no-body", filters={"mask_sensitivity": ""})
    _, parsed = feed(without, {ROOM_A: [record]})
    assert "DESCRIPTION" not in vevents(parsed)[0]
    with_body = make_calendar("body", include_body=True, filters={"mask_sensitivity": ""})
    _, parsed = feed(with_body, {ROOM_A: [record]})
    assert str(vevents(parsed)[0]["DESCRIPTION"]) == record.body


def test_mask_sensitivity_in_the_feed(make_calendar) -> None:  # type: ignore[no-untyped-def]
    calendar = make_calendar(include_body=True)  # the admin's default masks Personal/Private/...
    records = {
        ROOM_A: [
            make_record("Doctor", sensitivity="Personal", body="x", start=at(2, 8), end=at(2, 9)),
            make_record("Open day", body="y", start=at(2, 10), end=at(2, 11)),
        ]
    }
    _, parsed = feed(calendar, records)
    (masked,) = by_summary(parsed, "Private")
    assert "ORGANIZER" not in masked and "DESCRIPTION" not in masked
    assert str(masked["CLASS"]) == "PRIVATE"
    (open_day,) = by_summary(parsed, "Open day")
    assert str(open_day["DESCRIPTION"]) == "y"
    assert not by_summary(parsed, "Doctor")


def test_limited_detail_level_in_the_feed(make_calendar) -> None:  # type: ignore[no-untyped-def]
    calendar = make_calendar(
        include_body=True, filters={"detail_level": "limited", "mask_sensitivity": ""}
    )
    record = make_record("Sync", categories=("Blue",), body="agenda")
    _, parsed = feed(calendar, {ROOM_A: [record]})
    event = vevents(parsed)[0]
    assert str(event["SUMMARY"]) == "Sync" and "ORGANIZER" in event
    assert "DESCRIPTION" not in event and "CATEGORIES" not in event


def test_availability_detail_level_in_the_feed(make_calendar) -> None:  # type: ignore[no-untyped-def]
    calendar = make_calendar(filters={"detail_level": "availability", "mask_sensitivity": ""})
    records = {
        ROOM_A: [
            make_record("Secret", free_busy="Busy", start=at(2, 8), end=at(2, 9)),
            make_record("Maybe", free_busy="Tentative", start=at(2, 9), end=at(2, 10)),
            make_record("Away", free_busy="OOF", start=at(2, 10), end=at(2, 11)),
        ]
    }
    _, parsed = feed(calendar, records)
    assert [str(e["SUMMARY"]) for e in vevents(parsed)] == ["Busy", "Tentative", "Out of office"]
    assert all("ORGANIZER" not in event for event in vevents(parsed))


def test_dropped_events_never_reach_the_feed_and_say_why(make_calendar) -> None:  # type: ignore[no-untyped-def]
    calendar = make_calendar(filters={"subject": "*##*", "mask_sensitivity": ""})
    records = {
        ROOM_A: [
            make_record("Kept"),
            make_record("Planning ## hidden"),
            make_record("Gone", is_cancelled=True),
        ]
    }
    result, parsed = feed(calendar, records)
    assert [str(e["SUMMARY"]) for e in vevents(parsed)] == ["Kept"]
    assert result.dropped_by_filter() == {"filterSubject": 1, "filterIsCancelled": 1}
    assert result.event_count == 1


def test_window_starts_at_midnight_today_in_the_calendar_zone(make_calendar) -> None:  # type: ignore[no-untyped-def]
    calendar = make_calendar(timezone="Europe/Paris", request_window=2, filters={})
    window = calendar.window(NOW)
    assert window.start == dt.datetime(2026, 3, 1, 23, 0, tzinfo=UTC)  # 00:00 Paris
    assert window.end == dt.datetime(2026, 3, 3, 23, 0, tzinfo=UTC)
    records = {
        ROOM_A: [
            make_record("Yesterday", start=at(1, 21), end=at(1, 22)),
            make_record("Just after midnight", start=at(1, 23, 30), end=at(2, 0)),
            make_record("Day after tomorrow", start=at(4, 8), end=at(4, 9)),
            make_record("Last hour", start=at(3, 22), end=at(3, 23)),
        ]
    }
    _, parsed = feed(calendar, records)
    assert [str(e["SUMMARY"]) for e in vevents(parsed)] == ["Just after midnight", "Last hour"]


def test_alarm_triggers_in_the_feed(make_calendar) -> None:  # type: ignore[no-untyped-def]
    calendar = make_calendar(
        timezone="Europe/Paris",
        alarms={"start": ("event-start", -600), "end": ("event-end", 600)},
        filters={},
    )
    result, parsed = feed(calendar, {ROOM_A: [make_record("Sync")]})
    assert "TRIGGER;RELATED=START:-PT10M" in result.ics
    assert "TRIGGER;RELATED=END:PT10M" in result.ics
    valarms = list(vevents(parsed)[0].walk("VALARM"))
    assert [str(alarm["ACTION"]) for alarm in valarms] == ["DISPLAY", "DISPLAY"]
    assert all(str(alarm["DESCRIPTION"]) == "Sync" for alarm in valarms)


def test_day_alarms_are_absolute_utc_triggers(make_calendar) -> None:  # type: ignore[no-untyped-def]
    calendar = make_calendar(
        timezone="Europe/Paris",
        alarms={"start": ("day-start", 0), "end": ("day-end", 0)},
        filters={},
    )
    record = make_record("Sync", start=at(2, 8), end=at(2, 9))
    result, parsed = feed(calendar, {ROOM_A: [record]})
    assert "TRIGGER;VALUE=DATE-TIME:20260301T230000Z" in result.ics
    assert "TRIGGER;VALUE=DATE-TIME:20260302T225959Z" in result.ics
    triggers = [alarm.decoded("TRIGGER") for alarm in vevents(parsed)[0].walk("VALARM")]
    assert triggers == [
        dt.datetime(2026, 3, 1, 23, 0, tzinfo=UTC),
        dt.datetime(2026, 3, 2, 22, 59, 59, tzinfo=UTC),
    ]


def test_default_alarm_settings_emit_no_valarm(make_calendar) -> None:  # type: ignore[no-untyped-def]
    calendar = make_calendar(
        alarms={"start": ("event-start", 0), "end": ("event-end", 0)}, filters={}
    )
    result, _ = feed(calendar, {ROOM_A: [make_record()]})
    assert "VALARM" not in result.ics


def test_build_ics_alone_is_deterministic_and_sorted() -> None:
    info = FeedInfo(name="x", refresh_interval=300)
    later = FeedEvent(make_record("Later", start=at(2, 12), end=at(2, 13)))
    sooner = FeedEvent(make_record("Sooner", start=at(2, 8), end=at(2, 9)))
    text = build_ics(info, [later, sooner], stamp=at(2, 0))
    assert text == build_ics(info, [sooner, later], stamp=at(2, 0))
    assert text.index("Sooner") < text.index("Later")
    assert text.endswith("\r\n")
    assert event_uid(later.record) != event_uid(sooner.record)


def test_control_characters_are_dropped_so_strict_parsers_accept_the_feed() -> None:
    record = make_record(
        "Q3\x0bplan\x00",
        location="Room\x0cA",
        organizer_name="Bob\x1b Boss",
        categories=("Blue\x07",),
        body="one\x01two\r\nthree\tfour",
    )
    info = FeedInfo(name="x", refresh_interval=300, include_body=True)

    (event,) = vevents(parse_feed(build_ics(info, [FeedEvent(record)], stamp=at(2, 0))))

    assert str(event["SUMMARY"]) == "Q3plan"
    assert str(event["LOCATION"]) == "RoomA"
    assert event["ORGANIZER"].params["CN"] == "Bob Boss"
    assert event["CATEGORIES"].cats == ["Blue"]
    assert str(event["DESCRIPTION"]) == "onetwo\nthree\tfour"
    assert event_uid(record) == str(event["UID"])


def test_an_event_ending_before_it_starts_ends_when_it_starts() -> None:
    backwards = make_record("Backwards", start=at(2, 10), end=at(2, 9))
    no_day = make_record("No day", all_day=True, start=dt.date(2026, 3, 3), end=dt.date(2026, 3, 3))
    info = FeedInfo(name="x", refresh_interval=300)

    parsed = parse_feed(build_ics(info, [FeedEvent(backwards), FeedEvent(no_day)], stamp=at(2, 0)))

    (backwards_event,) = by_summary(parsed, "Backwards")
    (no_day_event,) = by_summary(parsed, "No day")
    assert backwards_event["DTEND"].dt == backwards_event["DTSTART"].dt == at(2, 10)
    assert no_day_event["DTSTART"].dt == dt.date(2026, 3, 3)
    assert no_day_event["DTEND"].dt == dt.date(2026, 3, 4)
