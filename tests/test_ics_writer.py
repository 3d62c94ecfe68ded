"""The feed's text, written line by line: what two parsers read back, and the bytes.

``build_ics`` writes the content lines itself (the cost of growth, docs/PERFORMANCE.md). For
generated events (unicode, texts long enough to fold with multibyte characters
at the boundary, all-day events, occurrences of series, alarms of every kind,
private events, bodies, organizer names with characters parameters must quote)
these tests check that

- ``icalendar`` and the strict ``ical`` package read back, component by
  component, the values computed here from the records;
- each text property is, byte for byte, what the ``icalendar`` package writes
  for that property and value (its escaping, parameter quoting and folding),
  the serialisation the feed was produced with before;
- every physical line is at most 75 octets, ends with CRLF and is valid UTF-8
  on its own.
"""

from __future__ import annotations

import datetime as dt
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ical.calendar_stream import IcsCalendarStream

from connector.core.records import EventRecord
from connector.pipeline import alarms
from connector.pipeline.alarms import AlarmRule, ComputedAlarm
from connector.pipeline.ics_writer import FeedEvent, FeedInfo, build_ics, event_uid
from tests.fixtures.feed import make_record, parse_feed

UTC = dt.UTC
STAMP = dt.datetime(2026, 3, 1, tzinfo=UTC)

# Deterministic: the same examples on every run; no example database in the worktree.
PROPERTY = settings(
    deadline=None,
    derandomize=True,
    database=None,
    max_examples=60,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

# -- what the feed should say, computed from the records ------------------------------

CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # dropped from texts
CLASSES = {"Normal": "PUBLIC", "Personal": "PRIVATE", "Private": "PRIVATE"}
CLASSES["Confidential"] = "CONFIDENTIAL"
PRIORITIES = {"High": 1, "Normal": 5, "Low": 9}


def clean(text: str) -> str:
    return CONTROL.sub("", text)


def read_back(text: str) -> str:
    """A text as a parser returns it: line breaks are one LF each."""
    return clean(text).replace("\r\n", "\n").replace("\r", "\n")


def expected_bounds(record: EventRecord) -> tuple[dt.date, dt.date]:
    if record.all_day:
        start = record.start.date() if isinstance(record.start, dt.datetime) else record.start
        end = record.end.date() if isinstance(record.end, dt.datetime) else record.end
        return start, end if end > start else start + dt.timedelta(days=1)
    assert isinstance(record.start, dt.datetime) and isinstance(record.end, dt.datetime)
    start_utc = record.start.astimezone(UTC).replace(microsecond=0)
    end_utc = max(record.end, record.start).astimezone(UTC).replace(microsecond=0)
    return start_utc, end_utc


def expected_order(events: list[FeedEvent]) -> list[str]:
    """UIDs by start instant (all-day first on their day), then resource, then UID."""

    def key(event: FeedEvent) -> tuple[str, str, str]:
        start = event.record.start
        if isinstance(start, dt.datetime):
            text = start.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")
        else:
            text = f"{start.isoformat()}T"
        return (text, event.record.resource, event_uid(event.record))

    return [event_uid(event.record) for event in sorted(events, key=key)]


def expected_event(event: FeedEvent, info: FeedInfo) -> dict[str, Any]:
    record = event.record
    start, end = expected_bounds(record)
    location = clean(info.label) or clean(record.location)
    body = clean(record.body or "") if info.include_body else ""
    return {
        "SUMMARY": read_back(record.subject),
        "DTSTART": start,
        "DTEND": end,
        "DTSTAMP": (record.last_modified or STAMP).astimezone(UTC).replace(microsecond=0),
        "LOCATION": read_back(location) if location else None,
        "ORGANIZER": f"mailto:{clean(record.organizer_email)}"
        if clean(record.organizer_email)
        else None,
        "CN": read_back(record.organizer_name) or None,
        "CLASS": CLASSES.get(record.sensitivity, "PUBLIC"),
        "PRIORITY": PRIORITIES.get(record.importance, 5),
        "STATUS": "CANCELLED"
        if record.is_cancelled
        else "TENTATIVE"
        if record.free_busy == "Tentative"
        else "CONFIRMED",
        "TRANSP": "TRANSPARENT" if record.free_busy == "Free" else "OPAQUE",
        "CATEGORIES": [read_back(category) for category in record.categories] or None,
        "DESCRIPTION": read_back(body) if body else None,
        "RESOURCES": record.resource or None,
        "X-EWS-CALENDAR-RESOURCE": record.resource,
        "ALARMS": [
            (
                "DISPLAY",
                read_back(record.subject) or "Event",
                alarm.relative
                if alarm.relative is not None
                else alarm.instant.replace(microsecond=0),
                alarm.relative_to or None,
            )
            for alarm in event.alarms
        ],
    }


# -- strategies -----------------------------------------------------------------------

# Characters the writer must escape, quote, fold around or drop, plus any character
# UTF-8 can carry (1 to 4 octets), plus runs long enough to fold.
SPECIAL = [
    "\\", ";", ",", ":", '"', "'", "^", "\u2019", " ", "\t", "\r", "\n", "\r\n",
    "\x01", "\x1f", "\x7f", "é", "€", "中", "😀", "\\N", "\\n", "^n",
]  # fmt: skip
pieces = st.one_of(
    st.sampled_from(SPECIAL),
    st.characters(codec="utf-8"),
    st.sampled_from(["é" * 37, "a" * 73, "中" * 25, "😀" * 19, "x" * 200]),
)
texts = st.lists(pieces, max_size=40).map("".join)
addresses = st.sampled_from(
    ["", "room-a@contoso.com", "Room-B@Contoso.com", "https://files.example/" + "cal/" * 20]
)
zones = st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"])
offsets = st.sampled_from([0, 1, -300, 600, 3601, -90061, 2 * 86400])
rules = st.builds(
    AlarmRule, st.sampled_from(["start", "end"]), st.sampled_from(alarms.RELATIONS), offsets
).filter(lambda rule: not rule.is_default)


@st.composite
def records(draw: st.DrawFn, number: int) -> EventRecord:
    moment = dt.datetime(2026, 3, 2, tzinfo=UTC) + dt.timedelta(
        minutes=draw(st.integers(0, 7 * 24 * 60)), microseconds=draw(st.sampled_from([0, 7]))
    )
    all_day = draw(st.booleans())
    if all_day:
        start: dt.date | dt.datetime = moment.date()
        end: dt.date | dt.datetime = start + dt.timedelta(days=draw(st.integers(-1, 3)))
    else:
        start = moment.astimezone(ZoneInfo(draw(zones)))
        end = start + dt.timedelta(seconds=draw(st.sampled_from([-60, 0, 59, 1800, 86400 * 2])))
    series = draw(st.booleans())
    return make_record(
        draw(texts),
        uid="series" if series else f"single-{number}",
        occurrence_id=f"{moment.isoformat()}-{number}" if series else "",
        is_recurring=series,
        resource=draw(addresses),
        start=start,
        end=end,
        all_day=all_day,
        location=draw(texts),
        organizer_name=draw(texts),
        organizer_email=draw(st.sampled_from(["", "alice@contoso.com", "o'neil+x@contoso.com"])),
        sensitivity=draw(st.sampled_from([*CLASSES, "Unknown"])),
        importance=draw(st.sampled_from([*PRIORITIES, "Unknown"])),
        free_busy=draw(
            st.sampled_from(["Free", "Tentative", "Busy", "OOF", "WorkingElsewhere", "NoData"])
        ),
        is_cancelled=draw(st.booleans()),
        categories=tuple(draw(st.lists(texts, max_size=3))),
        body=draw(st.one_of(st.none(), texts)),
        last_modified=draw(st.one_of(st.none(), st.just(moment - dt.timedelta(days=2)))),
    )


@st.composite
def feeds(draw: st.DrawFn) -> tuple[FeedInfo, list[FeedEvent]]:
    zone = draw(zones)
    info = FeedInfo(
        name=draw(texts.map(lambda text: clean(text).replace("\r", "").replace("\n", "")))
        or "room",
        refresh_interval=draw(st.sampled_from([0, 59, 60, 300, 3661, 86400, 90061])),
        timezone=zone,
        label=draw(st.sampled_from(["", 'Salle A, étage 2; aile "B"', "é" * 40])),
        include_body=draw(st.booleans()),
    )
    events = []
    for number in range(draw(st.integers(1, 6))):
        record = draw(records(number))
        chosen = draw(st.lists(rules, max_size=3))
        computed = [alarms.compute(record, rule, ZoneInfo(zone)) for rule in chosen]
        events.append(FeedEvent(record, computed))
    return info, events


# -- reading the text back --------------------------------------------------------------


def properties(text: str) -> list[tuple[str, str]]:
    """(component, folded property) in order: each property with its continuation lines."""
    result: list[tuple[str, str]] = []
    component = ""
    for line in text.split("\r\n")[:-1]:
        if line.startswith(" "):
            name, folded = result[-1]
            result[-1] = (name, f"{folded}\r\n{line}")
        else:
            if line.startswith("BEGIN:"):
                component = line[6:]
            result.append((component, line))
            if line.startswith("END:"):
                component = "VEVENT" if line == "END:VALARM" else ""
    return result


def icalendar_property(name: str, value: Any, parameters: dict[str, Any] | None = None) -> str:
    """The folded property as the icalendar package writes it."""
    component = icalendar.Event()
    component.add(name, value, parameters=parameters)
    return component.content_line(name, component[name]).to_ical().decode()


def check_lines(text: str) -> None:
    raw = text.encode()
    assert raw.endswith(b"\r\n")
    assert b"\n" not in raw.replace(b"\r\n", b""), "a bare LF"
    assert b"\r" not in raw.replace(b"\r\n", b""), "a bare CR"
    for line in raw.split(b"\r\n"):
        assert len(line) <= 75, line
        line.decode()  # a fold never splits a UTF-8 sequence


def check_values(text: str, info: FeedInfo, events: list[FeedEvent]) -> None:
    """Both parsers read, component by component, what the records say."""
    parsed = parse_feed(text)
    assert str(parsed["X-WR-CALNAME"]) == info.name
    assert str(parsed["X-WR-TIMEZONE"]) == info.timezone
    interval = dt.timedelta(seconds=max(info.refresh_interval, 60))
    assert parsed["REFRESH-INTERVAL"].dt == interval
    by_uid = {event_uid(event.record): event for event in events}
    vevents = list(parsed.walk("VEVENT"))
    assert [str(vevent["UID"]) for vevent in vevents] == expected_order(events)
    strict = {item.uid: item for item in IcsCalendarStream.calendar_from_ics(text).events}
    for vevent in vevents:
        uid = str(vevent["UID"])
        want = expected_event(by_uid[uid], info)
        got = {
            "SUMMARY": str(vevent["SUMMARY"]),
            "DTSTART": vevent["DTSTART"].dt,
            "DTEND": vevent["DTEND"].dt,
            "DTSTAMP": vevent["DTSTAMP"].dt,
            "LOCATION": str(vevent["LOCATION"]) if "LOCATION" in vevent else None,
            "ORGANIZER": str(vevent["ORGANIZER"]) if "ORGANIZER" in vevent else None,
            "CN": vevent["ORGANIZER"].params.get("CN") if "ORGANIZER" in vevent else None,
            "CLASS": str(vevent["CLASS"]),
            "PRIORITY": int(vevent["PRIORITY"]),
            "STATUS": str(vevent["STATUS"]),
            "TRANSP": str(vevent["TRANSP"]),
            "CATEGORIES": list(vevent["CATEGORIES"].cats) if "CATEGORIES" in vevent else None,
            "DESCRIPTION": str(vevent["DESCRIPTION"]) if "DESCRIPTION" in vevent else None,
            "RESOURCES": str(vevent["RESOURCES"]) if "RESOURCES" in vevent else None,
            "X-EWS-CALENDAR-RESOURCE": str(vevent["X-EWS-CALENDAR-RESOURCE"]),
            "ALARMS": [
                (
                    str(alarm["ACTION"]),
                    str(alarm["DESCRIPTION"]),
                    alarm["TRIGGER"].dt,
                    alarm["TRIGGER"].params.get("RELATED"),
                )
                for alarm in vevent.walk("VALARM")
            ],
        }
        if want["ORGANIZER"] is None:
            want["CN"] = None
        if want["CN"] and "\\" in want["CN"]:
            # icalendar reads \, \; \: and \\ in a parameter value as escapes, which
            # RFC 5545 3.2 does not have; the strict parser below reads the name.
            got["CN"] = want["CN"]
        assert got == want
        busy = vevent.get("X-MICROSOFT-CDO-BUSYSTATUS")
        assert (str(busy) if busy else None) == {
            "Free": "FREE",
            "Tentative": "TENTATIVE",
            "Busy": "BUSY",
            "OOF": "OOF",
            "WorkingElsewhere": "WORKINGELSEWHERE",
        }.get(by_uid[uid].record.free_busy)

        item = strict[uid]  # the strict parser reads the same values
        assert (item.summary or "") == want["SUMMARY"]
        assert item.location == want["LOCATION"]
        assert item.description == want["DESCRIPTION"]
        assert item.dtstart == want["DTSTART"] and item.dtend == want["DTEND"]
        if want["ORGANIZER"]:
            assert item.organizer is not None
            assert (item.organizer.uri, item.organizer.common_name) == (
                want["ORGANIZER"],
                want["CN"],
            )
        if want["CATEGORIES"] and not any(
            "," in category or "\\" in category for category in want["CATEGORIES"]
        ):
            # ical 14 splits CATEGORIES on escaped commas too; the rest it reads.
            assert item.categories == want["CATEGORIES"]
        assert [(alarm.description, alarm.trigger) for alarm in item.alarm] == [
            (description, trigger) for _, description, trigger, _ in want["ALARMS"]
        ]


TEXT_PROPERTY = re.compile(
    r"(SUMMARY|CATEGORIES|DESCRIPTION|LOCATION|ORGANIZER|RESOURCES|TRIGGER)[;:]"
)


def check_bytes(text: str, info: FeedInfo, events: list[FeedEvent]) -> None:
    """Each text property is what the icalendar package writes for it, fold for fold.

    The differences on purpose, left to check_values: the package turns a
    literal backslash-N into a line break (its TEXT escaping), the writer keeps
    it; an organizer name with a backslash or a tab is quoted (the package's own
    parser misreads it unquoted).
    """
    written = properties(text)
    by_uid = {event_uid(event.record): event for event in events}
    uids = [line[4:] for component, line in written if component == "VEVENT" and line[:4] == "UID:"]
    vevent_properties: list[list[tuple[str, str]]] = []
    for component, line in written:
        if line == "BEGIN:VEVENT":
            vevent_properties.append([])
        elif component in ("VEVENT", "VALARM"):
            vevent_properties[-1].append((component, line))
    for uid, lines in zip(uids, vevent_properties, strict=True):
        record = by_uid[uid].record
        subject = clean(record.subject)
        location = clean(info.label) or clean(record.location)
        body = clean(record.body or "") if info.include_body else ""
        email, name = clean(record.organizer_email), clean(record.organizer_name)
        want: list[tuple[str, str, Any, dict[str, Any] | None]] = [
            ("VEVENT", "SUMMARY", subject, None)
        ]
        if record.categories:
            categories = [clean(category) for category in record.categories]
            want.append(("VEVENT", "CATEGORIES", categories, None))
        if body:
            want.append(("VEVENT", "DESCRIPTION", body, None))
        if location:
            want.append(("VEVENT", "LOCATION", location, None))
        if email:
            address = icalendar.vCalAddress(f"mailto:{email}")
            if name:
                address.params["CN"] = icalendar.vText(name)
            want.append(("VEVENT", "ORGANIZER", address, None))
        if record.resource:
            want.append(("VEVENT", "RESOURCES", record.resource, None))
        for alarm in by_uid[uid].alarms:
            want.append(("VALARM", "DESCRIPTION", subject or "Event", None))
            want.append(("VALARM", "TRIGGER", *trigger_of(alarm)))
        checked = [(component, line) for component, line in lines if TEXT_PROPERTY.match(line)]
        assert len(checked) == len(want)
        for (component, line), (want_component, name_, value, parameters) in zip(
            checked, want, strict=True
        ):
            assert component == want_component
            if "\\N" in str(value) or (name_ == "ORGANIZER" and re.search(r"[\\\t]", name)):
                continue  # the differences on purpose (see the docstring)
            assert line == icalendar_property(name_, value, parameters)


def trigger_of(alarm: ComputedAlarm) -> tuple[Any, dict[str, Any]]:
    if alarm.relative is not None:
        return alarm.relative, {"RELATED": alarm.relative_to}
    return alarm.instant, {"VALUE": "DATE-TIME"}


@PROPERTY
@given(feed=feeds())
def test_generated_feeds_read_back_as_the_records_say(
    feed: tuple[FeedInfo, list[FeedEvent]],
) -> None:
    info, events = feed
    text = build_ics(info, events, stamp=STAMP)
    check_lines(text)
    check_values(text, info, events)
    check_bytes(text, info, events)


# -- examples -----------------------------------------------------------------------


def one_event(record: EventRecord, **info: Any) -> str:
    feed_info = FeedInfo(**{"name": "room", "refresh_interval": 300, **info})
    return build_ics(feed_info, [FeedEvent(record)], stamp=STAMP)


def test_folds_fall_between_characters_at_75_octets() -> None:
    subject = "Réunion " + "é" * 36 + "😀" * 30 + "中" * 30 + "a" * 100
    text = one_event(make_record(subject))
    check_lines(text)
    folded = [line for component, line in properties(text) if line.startswith("SUMMARY:")]
    assert folded[0].count("\r\n ") >= 5
    assert folded == [icalendar_property("SUMMARY", subject)]
    (vevent,) = parse_feed(text).walk("VEVENT")
    assert str(vevent["SUMMARY"]) == subject


def test_a_fold_never_separates_a_backslash_from_what_it_escapes() -> None:
    """Wherever the fold falls, in ASCII and in non-ASCII lines alike."""
    for first in ("a", "é"):
        for length in range(60, 80):
            subject = first + "a" * length + ",;^" * 40
            text = one_event(make_record(subject))
            (folded,) = [line for _, line in properties(text) if line.startswith("SUMMARY:")]
            for line in folded.split("\r\n"):
                escapes = len(line) - len(line.rstrip("\\"))
                assert escapes % 2 == 0, (first, length, line)
            assert folded == icalendar_property("SUMMARY", subject), (first, length)
            (vevent,) = parse_feed(text).walk("VEVENT")
            assert str(vevent["SUMMARY"]) == subject


def test_a_literal_backslash_n_stays_as_written() -> None:
    subject = r"Files on \\fs01\New folder"
    text = one_event(make_record(subject))
    assert "SUMMARY:Files on \\\\\\\\fs01\\\\New folder\r\n" in text
    (vevent,) = parse_feed(text).walk("VEVENT")
    assert str(vevent["SUMMARY"]) == subject
    (strict,) = IcsCalendarStream.calendar_from_ics(text).events
    assert strict.summary == subject


def test_organizer_names_are_quoted_when_parameters_need_it() -> None:
    cases = {
        "Alice": "ORGANIZER;CN=Alice:mailto:a@contoso.com",
        "Alice Organizer": 'ORGANIZER;CN="Alice Organizer":mailto:a@contoso.com',
        "Doe, John": 'ORGANIZER;CN="Doe, John":mailto:a@contoso.com',
        "a;b:c": 'ORGANIZER;CN="a;b:c":mailto:a@contoso.com',
        "O'Neil": 'ORGANIZER;CN="O\'Neil":mailto:a@contoso.com',
        '"Nick"': "ORGANIZER;CN=^'Nick^':mailto:a@contoso.com",
        "x^y": "ORGANIZER;CN=x^^y:mailto:a@contoso.com",
        "two\nlines": "ORGANIZER;CN=two^nlines:mailto:a@contoso.com",
        "\\": 'ORGANIZER;CN="\\":mailto:a@contoso.com',
    }
    for name, line in cases.items():
        record = make_record("M", organizer_name=name, organizer_email="a@contoso.com")
        text = one_event(record)
        assert f"\r\n{line}\r\n" in text, name
        (vevent,) = parse_feed(text).walk("VEVENT")
        assert vevent["ORGANIZER"].params["CN"] == name
        (strict,) = IcsCalendarStream.calendar_from_ics(text).events
        assert strict.organizer is not None and strict.organizer.common_name == name


def test_all_day_events_and_every_trigger_form() -> None:
    paris = ZoneInfo("Europe/Paris")
    record = make_record(
        "Holiday", all_day=True, start=dt.date(2026, 3, 4), end=dt.date(2026, 3, 5)
    )
    computed = [
        alarms.compute(record, AlarmRule("start", alarms.EVENT_START, -600), paris),
        alarms.compute(record, AlarmRule("end", alarms.EVENT_END, 90061), paris),
        alarms.compute(record, AlarmRule("start", alarms.DAY_START, 0), paris),
        alarms.compute(record, AlarmRule("end", alarms.DAY_END, 0), paris),
    ]
    text = build_ics(
        FeedInfo(name="room", refresh_interval=3661), [FeedEvent(record, computed)], stamp=STAMP
    )
    for line in (
        "DTSTART;VALUE=DATE:20260304",
        "DTEND;VALUE=DATE:20260305",
        "TRIGGER;RELATED=START:-PT10M",
        "TRIGGER;RELATED=END:P1DT1H1M1S",
        "TRIGGER;VALUE=DATE-TIME:20260303T230000Z",
        "TRIGGER;VALUE=DATE-TIME:20260304T225959Z",
        "REFRESH-INTERVAL;VALUE=DURATION:PT1H1M1S",
        "X-PUBLISHED-TTL:PT1H1M1S",
    ):
        assert f"\r\n{line}\r\n" in text, line
    parse_feed(text)


def test_a_line_break_in_a_verbatim_value_becomes_a_space() -> None:
    text = one_event(make_record("M"), name="Hall\r\nA")
    assert "\r\nX-WR-CALNAME:Hall A\r\n" in text
    assert str(parse_feed(text)["X-WR-CALNAME"]) == "Hall A"


# -- cost per event (not timed: work counted) -------------------------------------------


def calls_while(run: Callable[[], object]) -> tuple[int, set[str]]:
    """Python and C function calls made by ``run()``, and the icalendar files it entered."""
    count = 0
    entered: set[str] = set()
    package = str(Path(icalendar.__file__).parent)

    def profile(frame: FrameType, event: str, arg: object) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1
            if event == "call" and frame.f_code.co_filename.startswith(package):
                entered.add(frame.f_code.co_filename)

    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return count, entered


def test_the_writer_does_a_small_fixed_amount_of_work_per_event() -> None:
    """Writing does not go through icalendar's components.

    The calls made for 400 events minus those for 200 are the cost of 200
    events: about 150 calls each here, where icalendar's components made
    about 4,000.
    """
    paris = ZoneInfo("Europe/Paris")
    rule = AlarmRule("start", alarms.EVENT_START, -300)

    def feed(count: int) -> list[FeedEvent]:
        events = []
        for number in range(count):
            record = make_record(
                f"Meeting {number}, quarterly planning with the regional teams; é",
                uid=f"uid-{number}",
                start=dt.datetime(2026, 3, 2, tzinfo=UTC) + dt.timedelta(minutes=number),
                end=dt.datetime(2026, 3, 2, 1, tzinfo=UTC) + dt.timedelta(minutes=number),
                organizer_name="Doe, John",
                categories=("Blue category",),
                location="Room A, building 4",
            )
            events.append(FeedEvent(record, [alarms.compute(record, rule, paris)]))
        return events

    info = FeedInfo(name="room", refresh_interval=300)
    small, large = feed(200), feed(400)
    small_calls, small_entered = calls_while(lambda: build_ics(info, small, stamp=STAMP))
    large_calls, large_entered = calls_while(lambda: build_ics(info, large, stamp=STAMP))
    per_event = (large_calls - small_calls) / 200
    assert per_event < 300, per_event
    assert small_calls < 200 * 300 + 1000
    assert small_entered == large_entered == set()
