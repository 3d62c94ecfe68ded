"""The iCalendar source: a URL or a file, recurrences expanded, conditional GET to the origin."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from accounts.models import ServiceAccount
from connector.core.errors import SourceError
from connector.core.records import EventRecord, Window
from connector.core.trace import Trace
from connector.models import Calendar, MailboxState, Server
from connector.sources import open_source
from connector.sources.ics import IcsSource, clear_cache
from tests.fakes.icsorigin import FakeIcsOrigin

PARIS = ZoneInfo("Europe/Paris")
TODAY = dt.date.today()
FAKE_PASSWORD = "fake-secret-ics-password"


def stamp(day: int, hour: int = 0, minute: int = 0) -> str:
    return (TODAY + dt.timedelta(days=day)).strftime("%Y%m%d") + f"T{hour:02d}{minute:02d}00"


def day(n: int) -> dt.date:
    return TODAY + dt.timedelta(days=n)


def paris(n: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day(n), dt.time(hour, minute), tzinfo=PARIS).astimezone(dt.UTC)


def calendar_text() -> str:
    return "\r\n".join(
        [
            "BEGIN:VCALENDAR",
            "VERSION:2.0",
            "PRODID:-//Contoso//Published calendar//EN",
            "BEGIN:VEVENT",
            "UID:weekly-review@contoso.com",
            f"DTSTART;TZID=Europe/Paris:{stamp(0, 9)}",
            f"DTEND;TZID=Europe/Paris:{stamp(0, 10)}",
            "RRULE:FREQ=DAILY;COUNT=10",
            f"EXDATE;TZID=Europe/Paris:{stamp(2, 9)}",
            "SUMMARY:Daily review",
            "LOCATION:Salle Jaune",
            "ORGANIZER;CN=Zoë Martin:mailto:zoe@contoso.com",
            "ATTENDEE;CN=Room:mailto:room-y@contoso.com",
            "CATEGORIES:Team,Daily",
            f"LAST-MODIFIED:{stamp(-3, 8)}Z",
            "END:VEVENT",
            "BEGIN:VEVENT",
            "UID:weekly-review@contoso.com",
            f"RECURRENCE-ID;TZID=Europe/Paris:{stamp(1, 9)}",
            f"DTSTART;TZID=Europe/Paris:{stamp(1, 11)}",
            f"DTEND;TZID=Europe/Paris:{stamp(1, 12)}",
            "SUMMARY:Daily review (moved)",
            "STATUS:CANCELLED",
            "END:VEVENT",
            "BEGIN:VEVENT",
            "UID:private-1@contoso.com",
            f"DTSTART:{stamp(1, 14)}Z",
            f"DTEND:{stamp(1, 15)}Z",
            'SUMMARY:Négociation; "confidentielle"',
            "CLASS:CONFIDENTIAL",
            "PRIORITY:1",
            "X-MICROSOFT-CDO-BUSYSTATUS:OOF",
            "DESCRIPTION:Ligne un\\nLigne deux\\, avec virgule",
            "END:VEVENT",
            "BEGIN:VEVENT",
            "UID:holiday@contoso.com",
            f"DTSTART;VALUE=DATE:{stamp(3)[:8]}",
            f"DTEND;VALUE=DATE:{stamp(5)[:8]}",
            "SUMMARY:Fermeture",
            "TRANSP:TRANSPARENT",
            "CLASS:PRIVATE",
            "PRIORITY:9",
            "END:VEVENT",
            "BEGIN:VEVENT",
            "UID:floating@contoso.com",
            f"DTSTART:{stamp(2, 16)}",
            "DURATION:PT30M",
            "SUMMARY:Floating",
            "STATUS:TENTATIVE",
            "END:VEVENT",
            "BEGIN:VEVENT",
            "UID:outside@contoso.com",
            f"DTSTART:{stamp(30, 9)}Z",
            f"DTEND:{stamp(30, 10)}Z",
            "SUMMARY:Far away",
            "END:VEVENT",
            "END:VCALENDAR",
            "",
        ]
    )


def window() -> Window:
    start = dt.datetime.combine(TODAY, dt.time(), tzinfo=PARIS).astimezone(dt.UTC)
    return Window(start, start + dt.timedelta(days=7))


@pytest.fixture
def origin() -> Iterator[FakeIcsOrigin]:
    clear_cache()
    fake = FakeIcsOrigin()
    fake.put("/published/room-y/calendar.ics", calendar_text())
    fake.start()
    yield fake
    fake.stop()
    clear_cache()


@pytest.fixture
def ics_server(db: None, origin: FakeIcsOrigin) -> Server:
    return Server.objects.create(
        server_id="published", type=Server.Type.ICS, base_uri=f"{origin.url}/published/"
    )


@pytest.fixture
def paris_calendar(ics_server: Server) -> Calendar:
    return Calendar.objects.create(calendar_id="room-y", server=ics_server, timezone="Europe/Paris")


def by_subject(records: list[EventRecord]) -> dict[str, list[EventRecord]]:
    found: dict[str, list[EventRecord]] = {}
    for record in records:
        found.setdefault(record.subject, []).append(record)
    return found


def test_open_source_gives_the_ics_source(ics_server: Server) -> None:
    assert isinstance(open_source(ics_server), IcsSource)


def test_recurrences_are_expanded_in_the_window_and_mapped(
    ics_server: Server, paris_calendar: Calendar, origin: FakeIcsOrigin
) -> None:
    source = IcsSource(ics_server, calendar=paris_calendar)
    records = source.fetch("room-y/calendar.ics", window())
    subjects = by_subject(records)

    daily = subjects["Daily review"]
    # Days 0..6 of a daily series, minus the EXDATE (day 2) and the moved day 1.
    assert [r.start for r in daily] == [paris(n, 9) for n in (0, 3, 4, 5, 6)]
    first = daily[0]
    assert first.uid == "weekly-review@contoso.com"
    assert first.occurrence_id == paris(0, 9).isoformat()
    assert first.is_recurring and first.is_meeting
    assert first.end == paris(0, 10)
    assert first.location == "Salle Jaune"
    assert (first.organizer_name, first.organizer_email) == ("Zoë Martin", "zoe@contoso.com")
    assert first.categories == ("Team", "Daily")
    assert first.sensitivity == "Normal" and first.importance == "Normal"
    assert first.free_busy == "Busy"
    assert first.resource == "room-y/calendar.ics"
    assert first.last_modified == dt.datetime.combine(day(-3), dt.time(8), tzinfo=dt.UTC)
    assert first.body is None

    (moved,) = subjects["Daily review (moved)"]
    assert moved.is_cancelled is True
    assert moved.occurrence_id == paris(1, 9).isoformat()
    assert moved.start == paris(1, 11)

    (secret,) = subjects['Négociation; "confidentielle"']
    assert secret.sensitivity == "Confidential"
    assert secret.importance == "High"
    assert secret.free_busy == "OOF"
    assert secret.is_meeting is False and secret.is_recurring is False
    assert secret.occurrence_id == ""

    (holiday,) = subjects["Fermeture"]
    assert holiday.all_day is True
    assert (holiday.start, holiday.end) == (day(3), day(5))
    assert holiday.free_busy == "Free"
    assert holiday.sensitivity == "Private" and holiday.importance == "Low"

    (floating,) = subjects["Floating"]
    assert floating.start == paris(2, 16)  # floating time read in the calendar's zone
    assert floating.end == paris(2, 16, 30)
    assert floating.free_busy == "Tentative"

    assert "Far away" not in subjects
    assert len({r.key for r in records}) == len(records)


def test_body_only_when_asked(ics_server: Server, origin: FakeIcsOrigin) -> None:
    records = IcsSource(ics_server).fetch("room-y/calendar.ics", window(), include_body=True)
    secret = next(r for r in records if r.uid == "private-1@contoso.com")
    assert secret.body == "Ligne un\nLigne deux, avec virgule"
    assert next(r for r in records if r.uid == "holiday@contoso.com").body == ""


def test_conditional_get_reuses_the_last_copy(ics_server: Server, origin: FakeIcsOrigin) -> None:
    path = "/published/room-y/calendar.ics"
    first = IcsSource(ics_server).fetch("room-y/calendar.ics", window())
    state = MailboxState.objects.get(server=ics_server, mailbox="room-y/calendar.ics")
    assert state.etag == origin.etag(path)
    assert state.last_modified

    trace = Trace()
    second = IcsSource(ics_server, trace=trace).fetch("room-y/calendar.ics", window())

    assert second == first
    requests = origin.gets(path)
    assert len(requests) == 2
    assert requests[0].header("if-none-match") == ""
    assert requests[1].header("if-none-match") == origin.etag(path)
    assert any("304" in note for note in trace.steps[0].details)

    # The origin changes: a full answer again, with the new event.
    origin.put(path, calendar_text().replace("Salle Jaune", "Salle Verte"))
    third = IcsSource(ics_server).fetch("room-y/calendar.ics", window())
    assert {r.location for r in third if r.subject == "Daily review"} == {"Salle Verte"}
    state.refresh_from_db()
    assert state.etag == origin.etag(path)


def test_a_new_process_without_the_body_asks_unconditionally(
    ics_server: Server, origin: FakeIcsOrigin
) -> None:
    IcsSource(ics_server).fetch("room-y/calendar.ics", window())
    clear_cache()
    records = IcsSource(ics_server).fetch("room-y/calendar.ics", window())
    assert records
    last = origin.gets("/published/room-y/calendar.ics")[-1]
    assert last.header("if-none-match") == ""


def test_last_modified_alone_is_used_when_there_is_no_etag(db: None, origin: FakeIcsOrigin) -> None:
    server = Server.objects.create(server_id="plain", type=Server.Type.ICS, base_uri="")
    url = f"{origin.url}/published/room-y/calendar.ics"
    IcsSource(server).fetch(url, window())
    IcsSource(server).fetch(url, window())
    last = origin.gets("/published/room-y/calendar.ics")[-1]
    assert last.header("if-modified-since")


def test_basic_auth_from_the_service_account(db: None, origin: FakeIcsOrigin) -> None:
    origin.credentials = ("signage", FAKE_PASSWORD)
    server = Server.objects.create(
        server_id="private", type=Server.Type.ICS, base_uri=f"{origin.url}/published/"
    )
    with pytest.raises(SourceError) as excinfo:
        IcsSource(server).fetch("room-y/calendar.ics", window())
    assert excinfo.value.code == "http-401"
    assert "username and password" in excinfo.value.hint

    server.service_account = ServiceAccount.objects.create(
        name="ics", username="signage", password=FAKE_PASSWORD
    )
    server.save()
    assert IcsSource(server).fetch("room-y/calendar.ics", window())

    origin.credentials = ("signage", "fake-secret-changed")
    with pytest.raises(SourceError) as excinfo:
        IcsSource(server).fetch("room-y/calendar.ics", window())
    assert FAKE_PASSWORD not in excinfo.value.as_text()


def test_absolute_url_resource(db: None, origin: FakeIcsOrigin) -> None:
    server = Server.objects.create(server_id="urls", type=Server.Type.ICS)
    records = IcsSource(server).fetch(
        f"{origin.url}/published/room-y/calendar.ics?key=fake-published-key", window()
    )
    assert records


def test_plain_http_origin(db: None) -> None:
    origin = FakeIcsOrigin(tls=False)
    origin.put("/cal.ics", calendar_text())
    with origin:
        server = Server.objects.create(server_id="http", type=Server.Type.ICS, base_uri=origin.url)
        assert IcsSource(server).fetch("cal.ics", window())


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "rooms").mkdir()
    (tmp_path / "rooms" / "room-y.ics").write_text(calendar_text(), encoding="utf-8")
    (tmp_path / "secret.ics").write_text(calendar_text(), encoding="utf-8")
    return tmp_path / "rooms"


def test_local_file_relative_to_the_base_folder(db: None, folder: Path) -> None:
    server = Server.objects.create(server_id="files", type=Server.Type.ICS, base_uri=str(folder))
    records = IcsSource(server).fetch("room-y.ics", window())
    assert len(by_subject(records)["Daily review"]) == 5
    file_url = Server.objects.create(
        server_id="file-url", type=Server.Type.ICS, base_uri=f"file://{folder}"
    )
    assert IcsSource(file_url).fetch("room-y.ics", window()) == records


@pytest.mark.parametrize("resource", ["../secret.ics", "sub/../../secret.ics", "/etc/passwd"])
def test_paths_outside_the_base_folder_are_refused(db: None, folder: Path, resource: str) -> None:
    server = Server.objects.create(server_id="files", type=Server.Type.ICS, base_uri=str(folder))
    with pytest.raises(SourceError) as excinfo:
        IcsSource(server).fetch(resource, window())
    assert excinfo.value.code == "ics-location"
    assert "outside" in excinfo.value.message


def test_missing_file_and_folder(db: None, folder: Path) -> None:
    server = Server.objects.create(server_id="files", type=Server.Type.ICS, base_uri=str(folder))
    with pytest.raises(SourceError) as excinfo:
        IcsSource(server).fetch("nope.ics", window())
    assert excinfo.value.code == "ics-not-found"
    with pytest.raises(SourceError) as excinfo:
        IcsSource(server).fetch("", window())
    assert excinfo.value.code == "ics-not-found"


def test_unknown_url(ics_server: Server, origin: FakeIcsOrigin) -> None:
    with pytest.raises(SourceError) as excinfo:
        IcsSource(ics_server).fetch("room-z/calendar.ics", window())
    assert excinfo.value.code == "ics-not-found"
    assert excinfo.value.resource == "room-z/calendar.ics"


def test_not_an_icalendar_file(ics_server: Server, origin: FakeIcsOrigin) -> None:
    origin.put("/published/login.ics", "<html><body>Sign in</body></html>")
    trace = Trace()
    with pytest.raises(SourceError) as excinfo:
        IcsSource(ics_server, trace=trace).fetch("login.ics", window())
    assert excinfo.value.code == "ics-invalid"
    assert "BEGIN:VCALENDAR" in excinfo.value.hint
    assert trace.failed_step is not None


def test_origin_down(ics_server: Server, origin: FakeIcsOrigin) -> None:
    origin.stop()
    with pytest.raises(SourceError) as excinfo:
        IcsSource(ics_server).fetch("room-y/calendar.ics", window())
    assert excinfo.value.code == "connection"
    assert excinfo.value.retryable is True


def test_origin_error_is_retryable(ics_server: Server, origin: FakeIcsOrigin) -> None:
    origin.faults.fail_next(1, status=503)
    with pytest.raises(SourceError) as excinfo:
        IcsSource(ics_server).fetch("room-y/calendar.ics", window())
    assert excinfo.value.code == "http-503"
    assert excinfo.value.retryable is True


def test_relative_resource_without_base_is_explained(db: None) -> None:
    server = Server.objects.create(server_id="nobase", type=Server.Type.ICS)
    with pytest.raises(SourceError) as excinfo:
        IcsSource(server).fetch("room.ics", window())
    assert excinfo.value.code == "ics-location"


def test_dtstamp_is_the_change_time_when_there_is_no_last_modified(
    ics_server: Server, origin: FakeIcsOrigin
) -> None:
    # Feeds without METHOD (this application's own, Outlook's) give their revision
    # time as DTSTAMP only; it must be kept, not replaced by the refresh time.
    origin.put(
        "/published/stamped.ics",
        "\r\n".join(
            [
                "BEGIN:VCALENDAR",
                "VERSION:2.0",
                "PRODID:-//Contoso//Published calendar//EN",
                "BEGIN:VEVENT",
                "UID:stamped@contoso.com",
                f"DTSTART:{stamp(1, 9)}Z",
                f"DTEND:{stamp(1, 10)}Z",
                "DTSTAMP:20260105T090000Z",
                "SUMMARY:Stamped",
                "END:VEVENT",
                "END:VCALENDAR",
                "",
            ]
        ),
    )

    (record,) = IcsSource(ics_server).fetch("stamped.ics", window())

    assert record.last_modified == dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
