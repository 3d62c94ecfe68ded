"""The feed at the physical limit: what a fresh feed request costs.

A fresh 200 reads one small row (the calendar's access and freshness columns and
the snapshot's validators, through an index that holds them) and takes the body
from the process's memory; a 304 never looks at a body; nothing is written but
the minute's fetch record. The memory is keyed by (calendar, ETag): the database
row's ETag decides what is served, whoever wrote it. Statements are observed as
SQLite runs them (tests.fixtures.feed.sqlite_statements).
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.utils.http import http_date

from connector.models import Calendar, Snapshot
from connector.pipeline.build import build_calendar
from connector.pipeline.snapshots import etag_of, save_snapshot
from connector.services import feeds
from connector.services.feeds import FeedState
from tests.fixtures.feed import make_record, reads, sqlite_statements, writes

pytestmark = pytest.mark.django_db

URL = "/ical/rooms.ics"


@pytest.fixture
def fresh_calendar(make_calendar) -> Calendar:  # type: ignore[no-untyped-def]
    calendar = make_calendar("rooms", cache_persistence=300)
    records = {"room-a@contoso.com": [make_record("Board meeting")]}
    save_snapshot(calendar, build_calendar(calendar, records=records))
    return calendar


def _body_reads(statements: list[str]) -> list[str]:
    return [sql for sql in reads(statements) if '"ics"' in sql]


def _replace_elsewhere(calendar: Calendar, text: str, changed: dt.datetime) -> str:
    """What another process's refresh leaves in the database (this one is not told)."""
    etag = etag_of(text)
    Snapshot.objects.filter(calendar=calendar).update(
        ics=text, etag=etag, generated=changed, changed=changed
    )
    return etag


def _snapshot(calendar: Calendar, text: str) -> None:
    now = dt.datetime.now(dt.UTC)
    etag = etag_of(text)
    Snapshot.objects.create(calendar=calendar, ics=text, etag=etag, generated=now, changed=now)


def _snapshot_text(calendar_id: str, size: int) -> str:
    line = "X-FILLER:" + "x" * 60 + "\r\n"
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n"
        + f"X-WR-CALNAME:{calendar_id}\r\n"
        + line * (size // len(line))
        + "END:VCALENDAR\r\n"
    )


def test_a_fresh_200_from_memory_reads_one_small_row_and_no_body(client, fresh_calendar) -> None:  # type: ignore[no-untyped-def]
    first = client.get(URL)
    with sqlite_statements() as statements:
        response = client.get(URL)
    assert response.status_code == 200 and response.content == first.content
    assert response.content == Snapshot.objects.get().ics.encode("utf-8")
    assert len(reads(statements)) == 1 and _body_reads(statements) == []
    # The row with the body is not visited either: the validators come from an index.
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN QUERY PLAN " + feeds._sql("state", "sqlite"), ["rooms"])
        plan = " ".join(str(step[-1]) for step in cursor.fetchall())
    assert "COVERING INDEX snapshot_validators" in plan, plan
    assert response["Content-Length"] == str(len(response.content))


def test_the_body_is_read_once_per_process(client, fresh_calendar) -> None:  # type: ignore[no-untyped-def]
    with sqlite_statements() as cold:
        client.get(URL)
    with sqlite_statements() as warm:
        client.get(URL)
    assert len(_body_reads(cold)) == 1
    assert _body_reads(warm) == []
    assert feeds.cached_bytes() == len(Snapshot.objects.get().ics.encode("utf-8"))


@pytest.mark.parametrize("validator", ["etag", "last-modified"])
def test_a_304_reads_and_loads_no_body(client, fresh_calendar, validator) -> None:  # type: ignore[no-untyped-def]
    first = client.get(URL)
    feeds.forget()  # a process that never served the body
    headers = (
        {"HTTP_IF_NONE_MATCH": first["ETag"]}
        if validator == "etag"
        else {"HTTP_IF_MODIFIED_SINCE": first["Last-Modified"]}
    )
    with sqlite_statements() as statements:
        response = client.get(URL, **headers)
    assert response.status_code == 304 and response.content == b""
    assert len(reads(statements)) == 1 and _body_reads(statements) == []
    assert feeds.cached_bytes() == 0  # not even taken from the database and kept
    assert response["ETag"] == first["ETag"]
    assert response["Last-Modified"] == first["Last-Modified"]
    assert response["Cache-Control"] == "max-age=300"


def test_other_conditions_keep_their_meaning(client, fresh_calendar) -> None:  # type: ignore[no-untyped-def]
    etag = client.get(URL)["ETag"]
    assert client.get(URL, HTTP_IF_NONE_MATCH=f'"other", {etag}').status_code == 304
    assert client.get(URL, HTTP_IF_NONE_MATCH=f"W/{etag}").status_code == 304
    assert client.get(URL, HTTP_IF_NONE_MATCH="*").status_code == 304
    assert client.get(URL, HTTP_IF_NONE_MATCH='"other"').status_code == 200
    assert client.get(URL, HTTP_IF_NONE_MATCH=etag, HTTP_IF_MATCH='"other"').status_code == 412


def test_the_feed_path_writes_only_the_minutes_fetch_record(client, fresh_calendar) -> None:  # type: ignore[no-untyped-def]
    with sqlite_statements() as statements:
        etag = client.get(URL)["ETag"]  # the body read, the fetch record written
        client.get(URL)
        client.get(URL, HTTP_IF_NONE_MATCH=etag)
        client.head(URL)
        client.get("/plugnCast/.applets/.ews-calendar/2ical.php?calendarId=rooms")
        client.get("/ical/nothing-here.ics")  # a 404 is recorded apart
    written = writes(statements)
    assert all("connector_feedfetch" in sql for sql in written if "connector_milestone" not in sql)
    assert len([sql for sql in written if "connector_feedfetch" in sql]) == 2


def test_a_snapshot_written_elsewhere_is_served_at_once(client, fresh_calendar) -> None:  # type: ignore[no-untyped-def]
    old = client.get(URL)
    text = _snapshot_text("rooms", 2000)
    new_etag = _replace_elsewhere(fresh_calendar, text, dt.datetime.now(dt.UTC))

    response = client.get(URL)
    assert response.status_code == 200
    assert response.content == text.encode("utf-8") and response["ETag"] == new_etag
    revalidated = client.get(URL, HTTP_IF_NONE_MATCH=old["ETag"])
    assert revalidated.status_code == 200 and revalidated.content == text.encode("utf-8")
    assert client.get(URL, HTTP_IF_NONE_MATCH=new_etag).status_code == 304


def test_the_row_gives_the_validators_of_a_body_in_memory(client, fresh_calendar) -> None:  # type: ignore[no-untyped-def]
    first = client.get(URL)
    # Elsewhere the content changed and changed back: the same ETag, a later change.
    later = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=5)
    Snapshot.objects.filter(calendar=fresh_calendar).update(changed=later, generated=later)
    with sqlite_statements() as statements:
        response = client.get(URL)
    assert _body_reads(statements) == []  # the same content: from memory
    assert response.content == first.content and response["ETag"] == first["ETag"]
    assert response["Last-Modified"] == http_date(later.timestamp()) != first["Last-Modified"]


def test_a_body_replaced_between_the_two_reads_is_not_served(fresh_calendar) -> None:  # type: ignore[no-untyped-def]
    state = feeds.read_state("rooms")
    assert state is not None
    _replace_elsewhere(fresh_calendar, _snapshot_text("rooms", 500), dt.datetime.now(dt.UTC))
    assert feeds.body(state) is None  # the caller reads the state again
    again = feeds.read_state("rooms")
    assert again is not None and feeds.body(again) == Snapshot.objects.get().ics.encode("utf-8")


def test_access_control_holds_with_the_body_in_memory(client, fresh_calendar, settings) -> None:  # type: ignore[no-untyped-def]
    body = client.get(URL).content  # in memory now
    outside = client.get(URL, REMOTE_ADDR="203.0.113.7")
    assert outside.status_code == 403 and b"BEGIN:VCALENDAR" not in outside.content
    assert client.get(URL, REMOTE_ADDR="203.0.113.7", HTTP_IF_NONE_MATCH='"x"').status_code == 403
    wrong_key = client.get(URL + "?key=wrong", REMOTE_ADDR="203.0.113.7")
    assert wrong_key.status_code == 403
    keyed = client.get(f"{URL}?key={fresh_calendar.feed_key}", REMOTE_ADDR="203.0.113.7")
    assert keyed.status_code == 200 and keyed.content == body

    settings.TRUSTED_PROXIES = ["192.0.2.10/32"]
    settings.ICAL_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    via_proxy = {"REMOTE_ADDR": "192.0.2.10"}
    player = client.get(URL, HTTP_X_FORWARDED_FOR="10.1.2.3", **via_proxy)
    assert player.status_code == 200
    stranger = client.get(URL, HTTP_X_FORWARDED_FOR="203.0.113.7", **via_proxy)
    assert stranger.status_code == 403
    spoofed = client.get(URL, HTTP_X_FORWARDED_FOR="10.1.2.3, 203.0.113.7", **via_proxy)
    assert spoofed.status_code == 403


def test_the_memory_is_bounded(client, make_calendar, settings) -> None:  # type: ignore[no-untyped-def]
    settings.FEED_CACHE_MB = 1
    limit = 1024 * 1024
    texts = {}
    for name in ("one", "two", "three"):
        calendar = make_calendar(name, cache_persistence=300)
        texts[name] = _snapshot_text(name, 400_000)
        _snapshot(calendar, texts[name])
    for name, text in texts.items():
        assert client.get(f"/ical/{name}.ics").content == text.encode("utf-8")
        assert feeds.cached_bytes() <= limit
    with sqlite_statements() as statements:
        assert client.get("/ical/three.ics").content == texts["three"].encode("utf-8")
        assert client.get("/ical/one.ics").content == texts["one"].encode("utf-8")
    assert len(_body_reads(statements)) == 1  # "three" was kept, "one" had to go

    huge = make_calendar("huge", cache_persistence=300)
    text = _snapshot_text("huge", 2 * limit)
    _snapshot(huge, text)
    assert client.get("/ical/huge.ics").content == text.encode("utf-8")  # served, not kept
    assert feeds.cached_bytes() <= limit


@pytest.mark.parametrize(
    ("generated", "now", "fresh"),
    [
        ("2026-03-02 09:00", "2026-03-02 09:04", True),
        ("2026-03-02 09:00", "2026-03-02 09:05", False),  # cachePersistence 300 s reached
        ("2026-03-02 22:58", "2026-03-02 23:01", False),  # 00:01 in Berlin: a new day
        ("2026-03-02 22:56", "2026-03-02 22:59", True),  # 23:59 in Berlin
        ("2026-03-02 09:00", "2026-03-02 08:59:30", True),  # a clock 30 s behind
        ("2026-03-02 09:00", "2026-03-02 08:58", False),  # two minutes behind
    ],
)
def test_freshness_is_the_snapshots_own(make_calendar, generated, now, fresh) -> None:  # type: ignore[no-untyped-def]
    calendar = make_calendar("berlin", cache_persistence=300, timezone="Europe/Berlin")
    made = dt.datetime.fromisoformat(generated).replace(tzinfo=dt.UTC)
    at = dt.datetime.fromisoformat(now).replace(tzinfo=dt.UTC)
    snapshot = Snapshot(calendar=calendar, ics="", etag='"e"', generated=made, changed=made)
    state = FeedState.of(calendar, snapshot)
    assert snapshot.is_fresh(calendar, at) is fresh
    assert state.is_fresh(at) is fresh
    if fresh:  # of today's window, as the calendar computes it
        assert calendar.window(made).start == calendar.window(at).start


def test_a_calendar_without_a_snapshot_is_not_fresh(make_calendar) -> None:  # type: ignore[no-untyped-def]
    make_calendar("empty", cache_persistence=300)
    state = feeds.read_state("empty")
    assert state is not None and state.snapshot is None
    assert not state.is_fresh(dt.datetime.now(dt.UTC))
