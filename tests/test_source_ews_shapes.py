"""The EWS source reads what a real Exchange sends, not only what our fake sent first.

Exchange leaves out properties that have no value (and some it never sends for some
items), answers with ResponseClass="Warning", cuts a calendar view at the throttling
policy's EWSFindCountLimit or refuses it, and fails requests with SOAP faults. None of
it may crash the source or lose events silently.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from connector.core.errors import SourceError
from connector.models import Server
from connector.sources import open_source
from connector.sources.ews import reset_pool
from tests.fakes.ews import FakeExchange
from tests.fakes.rooms import FakeEvent
from tests.test_source_ews import ROOM_A, expected, fields, week

OPTIONAL = [
    "item:Subject",
    "item:Sensitivity",
    "item:Categories",
    "item:Importance",
    "item:IsDraft",
    "item:LastModifiedTime",
    "calendar:UID",
    "calendar:OriginalStart",
    "calendar:IsAllDayEvent",
    "calendar:LegacyFreeBusyStatus",
    "calendar:Location",
    "calendar:IsMeeting",
    "calendar:IsCancelled",
    "calendar:IsRecurring",
    "calendar:CalendarItemType",
    "calendar:Organizer",
    "calendar:StartTimeZone",
    "calendar:EndTimeZone",
]


@pytest.mark.parametrize("uri", OPTIONAL)
def test_an_item_without_an_optional_property_is_still_read(
    ews_server: Server, fake_ews: FakeExchange, uri: str
) -> None:
    fake_ews.omitted = {uri}
    records = open_source(ews_server).fetch(ROOM_A, week(), include_body=True)

    held = expected(fake_ews, ROOM_A, week())
    assert len(records) == len(held) > 0
    assert all(r.start and r.end for r in records)
    if uri == "calendar:UID":
        ids = {e.item_id for e in fake_ews.events(ROOM_A)}
        assert {r.uid for r in records} <= ids  # the item id stands in for the UID
    if uri == "item:Sensitivity":
        assert {r.sensitivity for r in records} == {"Normal"}
    if uri == "calendar:LegacyFreeBusyStatus":
        assert {r.free_busy for r in records} == {"Busy"}
    if uri in ("calendar:StartTimeZone", "calendar:EndTimeZone"):
        assert [fields(r) for r in records] == held


def test_an_appointment_without_subject_location_organizer_or_categories(
    ews_server: Server, fake_ews: FakeExchange
) -> None:
    start = dt.datetime.combine(dt.date.today(), dt.time(12), tzinfo=dt.UTC)
    bare = FakeEvent(
        "",
        start,
        start + dt.timedelta(hours=1),
        organizer_name="",
        organizer_email="",
        is_meeting=False,
    )
    fake_ews.set_events(ROOM_A, [bare])

    (record,) = open_source(ews_server).fetch(ROOM_A, week(), include_body=True)

    assert (record.subject, record.location, record.categories) == ("", "", ())
    assert (record.organizer_name, record.organizer_email) == ("", "")
    assert (record.uid, record.start, record.body) == (bare.uid, start, "")


def test_a_warning_answer_keeps_its_events(ews_server: Server, fake_ews: FakeExchange) -> None:
    fake_ews.find_item_warning = "ErrorExceededFindCountLimit"
    records = open_source(ews_server).fetch(ROOM_A, week())
    assert [fields(r) for r in records] == expected(fake_ews, ROOM_A, week())


@pytest.mark.parametrize("mode", ["truncate", "error"])
def test_a_view_beyond_the_find_count_limit_is_read_in_parts(
    ews_server: Server, fake_ews: FakeExchange, mode: str
) -> None:
    held = expected(fake_ews, ROOM_A, week())
    fake_ews.find_count_limit = len(held) // 3
    fake_ews.find_count_mode = mode

    records = open_source(ews_server).fetch(ROOM_A, week())

    assert sorted(fields(r) for r in records) == sorted(held)
    assert len({(r.uid, r.occurrence_id) for r in records}) == len(records)
    assert fake_ews.count_op("FindItem", mailbox=ROOM_A) > 1


def test_a_view_without_a_limit_is_one_request(ews_server: Server, fake_ews: FakeExchange):
    fake_ews.find_count_limit = 1000  # Exchange's default EWSFindCountLimit
    open_source(ews_server).fetch(ROOM_A, week())
    assert fake_ews.count_op("FindItem", mailbox=ROOM_A) == 1


def test_a_schema_validation_fault_names_the_version(
    ews_server: Server, fake_ews: FakeExchange
) -> None:
    open_source(ews_server).fetch(ROOM_A, week())
    fake_ews.inject_fault(
        "ErrorSchemaValidation",
        "The request failed schema validation: The element 'CalendarView' is invalid.",
    )
    with pytest.raises(SourceError) as caught:
        open_source(ews_server).fetch(ROOM_A, week())
    assert caught.value.code == "schema"
    assert "learns it again" in caught.value.hint and "CalendarView" in caught.value.hint
    assert Server.objects.get(pk=ews_server.pk).ews_version == ""
    fake_ews.clear_log()
    assert open_source(ews_server).fetch(ROOM_A, week())  # the pooled connection too
    assert [op.operation for op in fake_ews.ops] == ["ConvertId", "FindItem"]
    assert Server.objects.get(pk=ews_server.pk).ews_version == "15.2.1544.4"


def test_an_internal_server_error_fault_is_retryable_with_a_hint(
    ews_server: Server, fake_ews: FakeExchange
) -> None:
    open_source(ews_server).fetch(ROOM_A, week())
    fake_ews.inject_fault("ErrorInternalServerError", "An internal server error occurred.")
    with pytest.raises(SourceError) as caught:
        open_source(ews_server).fetch(ROOM_A, week())
    assert caught.value.code == "ErrorInternalServerError" and caught.value.retryable
    assert "event log" in caught.value.hint


def test_http_503_is_reported_as_busy_within_the_time_bound(
    ews_server: Server, fake_ews: FakeExchange, settings: object
) -> None:
    settings.REFRESH_TIMEOUT = 1  # type: ignore[attr-defined]
    open_source(ews_server).fetch(ROOM_A, week())
    fake_ews.faults.fail_next(100, status=503)
    with pytest.raises(SourceError) as caught:
        open_source(ews_server).fetch(ROOM_A, week())
    assert caught.value.code == "http-503" and caught.value.retryable
    assert "MSExchangeServicesAppPool" in caught.value.hint
    assert "throttling" not in caught.value.hint


def test_a_busy_fault_is_still_throttling(
    ews_server: Server, fake_ews: FakeExchange, settings: object
) -> None:
    settings.REFRESH_TIMEOUT = 1  # type: ignore[attr-defined]
    open_source(ews_server).fetch(ROOM_A, week())
    fake_ews.inject_busy(100, back_off_ms=5000)
    with pytest.raises(SourceError) as caught:
        open_source(ews_server).fetch(ROOM_A, week())
    assert caught.value.code == "ErrorServerBusy"


@pytest.mark.parametrize("zone_id", ["Customized Time Zone", "tzone://Microsoft/Custom"])
def test_a_mailbox_in_a_custom_time_zone_keeps_its_all_day_dates(db: None, zone_id: str) -> None:
    from tests.fakes.ews_soap import MailboxZone
    from tests.test_source_ews import ews_server_for

    zone = MailboxZone(iana="Europe/Berlin", windows=zone_id, display="Customized Time Zone")
    with FakeExchange(zone=zone) as fake:
        fake.add_user("monitor@contoso.com", "fake-password-monitor", "ntlm", rooms=[ROOM_A])
        server = ews_server_for(fake, "monitor@contoso.com", "fake-password-monitor", "ntlm")
        try:
            records = open_source(server).fetch(ROOM_A, week())
        finally:
            reset_pool()
    assert [fields(r) for r in records] == expected(fake, ROOM_A, week())


@pytest.mark.parametrize(
    "time_format",
    ["%Y-%m-%dT%H:%M:%S.000Z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"],
    ids=["milliseconds", "offset", "no-zone"],
)
def test_instants_written_another_way_are_read_the_same(
    ews_server: Server, fake_ews: FakeExchange, time_format: str
) -> None:
    fake_ews.time_format = time_format
    records = open_source(ews_server).fetch(ROOM_A, week())
    assert [fields(r) for r in records] == expected(fake_ews, ROOM_A, week())
    assert all(r.last_modified == dt.datetime(2026, 1, 5, 9, tzinfo=dt.UTC) for r in records)


def test_a_fault_in_another_soap_style_keeps_its_response_code(
    ews_server: Server, fake_ews: FakeExchange
) -> None:
    fake_ews.soap_prefix = "soap"
    fake_ews.xml_declaration = False
    assert [fields(r) for r in open_source(ews_server).fetch(ROOM_A, week())] == expected(
        fake_ews, ROOM_A, week()
    )
    fake_ews.revoke("delegate@contoso.com", ROOM_A)
    with pytest.raises(SourceError) as caught:
        open_source(ews_server).fetch(ROOM_A, week())
    assert caught.value.code == "ErrorAccessDenied"
    fake_ews.inject_fault("ErrorImpersonateUserDenied", "The account does not have permission.")
    with pytest.raises(SourceError) as caught:
        open_source(ews_server).fetch("room-b@contoso.com", week())
    assert caught.value.code == "ErrorImpersonateUserDenied"


def test_a_moved_occurrence_keeps_its_original_start_as_its_identity(
    ews_server: Server, fake_ews: FakeExchange
) -> None:
    events = fake_ews.events(ROOM_A)
    index = next(i for i, e in enumerate(events) if e.subject == "Daily stand-up")
    moved = events[index]
    assert isinstance(moved.start, dt.datetime) and isinstance(moved.end, dt.datetime)
    events[index] = dataclasses.replace(
        moved, start=moved.start + dt.timedelta(hours=2), end=moved.end + dt.timedelta(hours=2)
    )
    fake_ews.set_events(ROOM_A, events)

    records = open_source(ews_server).fetch(ROOM_A, week())

    assert [fields(r) for r in records] == expected(fake_ews, ROOM_A, week())
    record = next(r for r in records if r.start == moved.start + dt.timedelta(hours=2))
    assert record.is_recurring and record.occurrence_id == moved.start.isoformat()
