"""Who is fetching: the last player fetches of each calendar.

The feed records (time, client address, user agent, status) with at most one
database write per (calendar, client address) a minute per process, as one
upsert, after the answer is sent; /status/ and the calendar's admin page show
it, with "never fetched" as a state of its own.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import User
from django.test import Client

from connector.models import Calendar, FeedFetch
from connector.pipeline.build import build_calendar
from connector.pipeline.snapshots import save_snapshot
from connector.services import fetches
from connector.services.fetches import FetchRecord, describe_fetch, last_fetches
from tests.fixtures.feed import make_record, reads, sqlite_statements, writes
from tests.fixtures.users import TEST_PASSWORD

pytestmark = pytest.mark.django_db

PLAYER = "Mozilla/5.0 (Linux; Player PnC 4.1)"


@pytest.fixture
def fresh(make_calendar) -> Calendar:  # type: ignore[no-untyped-def]
    calendar = make_calendar("lobby", cache_persistence=300)
    records = {"room-a@contoso.com": [make_record("Board meeting")]}
    save_snapshot(calendar, build_calendar(calendar, records=records))
    return calendar


def fetch(client: Client, url: str = "/ical/lobby.ics", **extra: str):  # type: ignore[no-untyped-def]
    extra.setdefault("HTTP_USER_AGENT", PLAYER)
    return client.get(url, **extra)


def test_two_fetches_within_a_minute_write_once(client: Client, fresh: Calendar) -> None:
    with sqlite_statements() as first:
        assert fetch(client).status_code == 200
    at = FeedFetch.objects.get().at
    with sqlite_statements() as second:
        assert fetch(client).status_code == 200

    # One upsert (beside it, the first feed of the process may note the first-run milestone).
    assert len([sql for sql in writes(first) if "connector_feedfetch" in sql]) == 1
    assert writes(second) == []
    assert len(reads(second)) == 1  # the hot path: one read
    row = FeedFetch.objects.get()
    assert (row.calendar_id, row.client, row.status, row.at) == ("lobby", "127.0.0.1", 200, at)
    assert row.user_agent == PLAYER and row.path == "/ical/lobby.ics"


def test_workers_writing_the_same_player_leave_one_row(client: Client, fresh: Calendar) -> None:
    fetch(client)
    fetches.forget()  # another gunicorn worker: its own throttle, the same database
    etag = fetch(client)["ETag"]
    fetches.forget()
    assert fetch(client, HTTP_IF_NONE_MATCH=etag).status_code == 304

    assert FeedFetch.objects.count() == 1
    assert FeedFetch.objects.get().status == 304


def test_each_player_address_is_its_own_entry(client: Client, fresh: Calendar) -> None:
    fetch(client, REMOTE_ADDR="10.0.0.5")
    fetch(client, REMOTE_ADDR="10.0.0.6", HTTP_USER_AGENT="other player")

    shown = last_fetches(["lobby", "nobody-asks"])
    assert len(shown["lobby"]) == 2
    assert {record.client for record in shown["lobby"]} == {"10.0.0.5", "10.0.0.6"}
    assert shown["nobody-asks"] == []  # never fetched


def test_newest_first(db: None) -> None:
    import time_machine

    for minute, client in ((0, "10.0.0.5"), (5, "10.0.0.6"), (2, "10.0.0.7")):
        with time_machine.travel(dt.datetime(2026, 3, 2, 9, minute, tzinfo=dt.UTC), tick=False):
            fetches.record_fetch(
                "lobby", client=client, path="/ical/lobby.ics", user_agent="", status=200
            )
    assert [record.client for record in last_fetches(["lobby"])["lobby"]] == [
        "10.0.0.6",
        "10.0.0.7",
        "10.0.0.5",
    ]


def test_the_client_address_comes_through_trusted_proxies(
    client: Client, fresh: Calendar, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.TRUSTED_PROXIES = ["192.0.2.10/32"]
    fetch(client, REMOTE_ADDR="192.0.2.10", HTTP_X_FORWARDED_FOR="10.0.0.5")
    assert FeedFetch.objects.get().client == "10.0.0.5"


def test_a_refused_player_is_recorded_as_403(client: Client, fresh: Calendar) -> None:
    assert fetch(client, REMOTE_ADDR="203.0.113.7").status_code == 403
    row = FeedFetch.objects.get()
    assert (row.client, row.status) == ("203.0.113.7", 403)


def test_an_unknown_calendar_is_recorded_as_404_apart(client: Client, fresh: Calendar) -> None:
    assert fetch(client, "/ical/old-lobby.ics").status_code == 404
    row = FeedFetch.objects.get()
    assert (row.calendar_id, row.status, row.known) == ("old-lobby", 404, False)
    assert [record.path for record in fetches.unknown_fetches()] == ["/ical/old-lobby.ics"]


def test_unknown_calendars_are_recorded_in_bounded_numbers(client: Client, db: None) -> None:
    for number in range(fetches.UNKNOWN_WRITES_PER_MINUTE + 5):
        assert fetch(client, f"/ical/guess-{number}.ics").status_code == 404
    assert FeedFetch.objects.count() == fetches.UNKNOWN_WRITES_PER_MINUTE


@pytest.mark.django_db(transaction=True)  # the refresh runs in a thread
def test_a_failing_calendar_is_recorded_as_502(
    client: Client, make_calendar, refresh_threads_joined
) -> None:  # type: ignore[no-untyped-def]
    # Its iCalendar origin refuses connections (the ics_server fixture points at port 9).
    make_calendar("down", resources=("down.ics",), cache_persistence=300)
    assert fetch(client, "/ical/down.ics").status_code == 502
    assert FeedFetch.objects.get().status == 502


def test_the_legacy_url_is_recorded_with_its_calendar(client: Client, fresh: Calendar) -> None:
    url = "/plugnCast/.applets/.ews-calendar/2ical.php?calendarId=lobby&key=nope"
    assert fetch(client, url).status_code == 200
    row = FeedFetch.objects.get()
    assert row.calendar_id == "lobby"
    assert row.path == "/plugnCast/.applets/.ews-calendar/2ical.php?calendarId=lobby"


def test_a_fetch_in_plain_words() -> None:
    at = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    record = FetchRecord("lobby", "/ical/lobby.ics", "10.0.0.5", PLAYER, 200, at)
    assert (
        describe_fetch(record, at + dt.timedelta(minutes=2, seconds=5))
        == "players fetched /ical/lobby.ics 2 minutes ago from 10.0.0.5 (status 200)"
    )
    assert describe_fetch(record, at + dt.timedelta(seconds=3)).endswith(
        "just now from 10.0.0.5 (status 200)"
    )
    assert "1 hour ago" in record.describe(at + dt.timedelta(minutes=61))


def test_status_shows_the_fetches_and_never_fetched(
    client: Client, fresh: Calendar, make_calendar, admin_user: User
) -> None:  # type: ignore[no-untyped-def]
    make_calendar("quiet")
    fetch(client, REMOTE_ADDR="10.0.0.5")
    fetch(client, "/ical/gone.ics", REMOTE_ADDR="10.0.0.9")
    client.login(username="admin", password=TEST_PASSWORD)

    html = client.get("/status/fragment/").content.decode()

    lobby = html.split('data-fetches="lobby"')[1].split("</tr>")[0]
    quiet = html.split('data-fetches="quiet"')[1].split("</tr>")[0]
    assert "10.0.0.5" in lobby and "status 200" in lobby and "PnC 4.1" in lobby
    assert "never fetched" in quiet and "10.0.0.5" not in quiet
    assert "/ical/gone.ics" in html.split('id="unknown-fetches"')[1]


def test_the_calendar_admin_page_shows_its_fetches(
    client: Client, fresh: Calendar, make_calendar, admin_user: User
) -> None:  # type: ignore[no-untyped-def]
    quiet = make_calendar("quiet")
    fetch(client, REMOTE_ADDR="10.0.0.5")
    client.login(username="admin", password=TEST_PASSWORD)

    page = client.get(f"/admin/connector/calendar/{fresh.pk}/change/").content.decode()
    section = page.split('id="player-fetches"')[1].split("</fieldset>")[0]
    assert "10.0.0.5" in section and "PnC 4.1" in section and "<td>200</td>" in section

    page = client.get(f"/admin/connector/calendar/{quiet.pk}/change/").content.decode()
    assert "never fetched" in page.split('id="player-fetches"')[1].split("</fieldset>")[0]
