"""The feed's hot path: a fresh snapshot costs one database query, whatever the URL.

Players poll every few minutes, so a fresh feed request must read only the
calendar (joined with its server and snapshot): no refresh status, no filters,
no resources, no session. Who fetched is written at most once a minute per
player (connector/services/fetches.py): these tests count the requests after
that first one.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from connector.models import Calendar
from connector.pipeline.build import build_calendar
from connector.pipeline.snapshots import save_snapshot
from tests.fixtures.feed import make_record

pytestmark = pytest.mark.django_db

FRESH_FEED_QUERIES = 1  # the calendar joined with its server and its snapshot


@pytest.fixture
def fresh_calendar(make_calendar) -> Calendar:  # type: ignore[no-untyped-def]
    calendar = make_calendar("rooms", cache_persistence=300)
    records = {"room-a@contoso.com": [make_record("Board meeting")]}
    save_snapshot(calendar, build_calendar(calendar, records=records))
    return calendar


def queries_of(client: Client, url: str, **headers: str) -> tuple[int, int]:
    client.get(url, **headers)  # the minute's one write of who fetched
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, **headers)
    return response.status_code, len(captured.captured_queries)


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
    with CaptureQueriesContext(connection) as captured:
        assert client.get("/ical/rooms.ics").status_code == 200
    assert len(captured.captured_queries) == FRESH_FEED_QUERIES + 1
