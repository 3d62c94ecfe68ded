"""The feed's hot path: a fresh snapshot costs one database query, whatever the URL.

Players poll every few minutes, so a fresh feed request must read only the
calendar's small row (joined with its snapshot's validators): no refresh
status, no filters, no resources, no session; the body comes from the
process's memory once read (tests/test_feed_fast_path.py). Who fetched is
written at most once a minute per player (connector/services/fetches.py):
these tests count the statements after that first one, as SQLite runs them
(the feed's reads bypass Django's query log).
"""

from __future__ import annotations

import pytest
from django.test import Client

from connector.models import Calendar
from connector.pipeline.build import build_calendar
from connector.pipeline.snapshots import save_snapshot
from connector.services import feeds, fetches
from tests.fixtures.feed import make_record, reads, sqlite_statements, writes

pytestmark = pytest.mark.django_db

FRESH_FEED_QUERIES = 1  # the calendar joined with its snapshot's validators


@pytest.fixture
def fresh_calendar(make_calendar) -> Calendar:  # type: ignore[no-untyped-def]
    calendar = make_calendar("rooms", cache_persistence=300)
    records = {"room-a@contoso.com": [make_record("Board meeting")]}
    save_snapshot(calendar, build_calendar(calendar, records=records))
    return calendar


def queries_of(client: Client, url: str, **headers: str) -> tuple[int, int]:
    client.get(url, **headers)  # the minute's one write of who fetched; the body read
    with sqlite_statements() as statements:
        response = client.get(url, **headers)
    return response.status_code, len(reads(statements) + writes(statements))


def test_a_fresh_feed_is_served_with_one_query(client, fresh_calendar) -> None:  # type: ignore[no-untyped-def]
    assert queries_of(client, "/ical/rooms.ics") == (200, FRESH_FEED_QUERIES)


def test_the_legacy_url_serves_a_fresh_feed_with_one_query(client, fresh_calendar) -> None:  # type: ignore[no-untyped-def]
    url = "/plugnCast/.applets/.ews-calendar/2ical.php?calendarId=rooms"
    assert queries_of(client, url) == (200, FRESH_FEED_QUERIES)


def test_a_revalidation_answered_304_costs_the_same_one_query(client, fresh_calendar) -> None:  # type: ignore[no-untyped-def]
    etag = client.get("/ical/rooms.ics")["ETag"]
    status, queries = queries_of(client, "/ical/rooms.ics", HTTP_IF_NONE_MATCH=etag)
    assert (status, queries) == (304, FRESH_FEED_QUERIES)


def test_an_unknown_calendar_costs_one_query(client, db) -> None:  # type: ignore[no-untyped-def]
    assert queries_of(client, "/ical/nothing-here.ics") == (404, 1)


def test_the_first_fetch_of_a_minute_adds_one_write(client, fresh_calendar) -> None:  # type: ignore[no-untyped-def]
    client.get("/ical/rooms.ics")  # the body is in memory
    fetches.forget()  # a minute later
    with sqlite_statements() as statements:
        assert client.get("/ical/rooms.ics").status_code == 200
    assert len(reads(statements)) == FRESH_FEED_QUERIES
    assert len(writes(statements)) == 1


def _selects_the_body(sql: str) -> bool:
    return '"ics"' in sql or ".ics " in sql or sql.rstrip().endswith(".ics")


def test_a_304_does_not_read_the_body(client, fresh_calendar) -> None:  # type: ignore[no-untyped-def]
    etag = client.get("/ical/rooms.ics")["ETag"]
    feeds.forget()  # nothing in memory: a body read would show
    with sqlite_statements() as statements:
        response = client.get("/ical/rooms.ics", HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 304 and response.content == b""
    assert [sql for sql in statements if _selects_the_body(sql)] == []
    with sqlite_statements() as statements:
        client.get("/ical/rooms.ics")
    assert any(_selects_the_body(sql) for sql in statements)  # the check sees a body read


def test_a_revalidation_that_does_not_match_gets_the_whole_feed(client, fresh_calendar) -> None:  # type: ignore[no-untyped-def]
    whole = client.get("/ical/rooms.ics")
    response = client.get("/ical/rooms.ics", HTTP_IF_NONE_MATCH='"an-older-etag"')
    assert response.status_code == 200
    assert response.content == whole.content and response["ETag"] == whole["ETag"]


def test_the_feed_path_writes_nothing_after_the_minutes_record(client, fresh_calendar) -> None:  # type: ignore[no-untyped-def]
    client.get("/ical/rooms.ics")
    etag = client.get("/ical/rooms.ics")["ETag"]
    feeds.forget()  # the body read again too
    with sqlite_statements() as statements:
        for headers in ({}, {"HTTP_IF_NONE_MATCH": etag}, {"REMOTE_ADDR": "203.0.113.7"}):
            client.get("/ical/rooms.ics", **headers)
        client.head("/ical/rooms.ics")
        client.get("/plugnCast/.applets/.ews-calendar/2ical.php?calendarId=rooms")
    # The outside address is a new player: its one write of the minute, and no other.
    assert [sql for sql in writes(statements) if "connector_feedfetch" not in sql] == []
    assert len(writes(statements)) == 1


def test_the_feed_skips_sessions_and_cookies(client, fresh_calendar, admin_user) -> None:  # type: ignore[no-untyped-def]
    from tests.fixtures.users import TEST_PASSWORD

    client.login(username="admin", password=TEST_PASSWORD)  # a browser with a session
    with sqlite_statements() as statements:
        response = client.get("/ical/rooms.ics")
    assert response.status_code == 200
    # Answered before the session, auth, messages, CSRF and axes middleware.
    assert not hasattr(response.wsgi_request, "session")
    assert not hasattr(response.wsgi_request, "user")
    assert "Cookie" not in response.get("Vary", "") and not response.cookies
    assert statements and not any("django_session" in sql for sql in statements)
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"  # SecurityMiddleware still runs


def test_the_console_trace_of_the_legacy_url_still_needs_a_signed_in_user(
    client, fresh_calendar
) -> None:  # type: ignore[no-untyped-def]
    url = "/plugnCast/.applets/.ews-calendar/2ical.php?calendarId=rooms&debug=yes"
    response = client.get(url)
    assert response.status_code in (302, 403)
