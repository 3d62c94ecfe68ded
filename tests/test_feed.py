"""GET /ical/<id>.ics against the fake Exchange (Graph): caching, access, errors.

A feed request that finds its snapshot stale refreshes it in a thread it waits
for (bounded by FEED_REFRESH_TIMEOUT), so these tests use a transactional
database: that thread has its own connection.
"""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from connector.core import metrics
from connector.models import RefreshStatus, Snapshot
from connector.services.refresh import FEED_RETRY_FIRST, join_background
from tests.fixtures.feed import by_summary, parse_feed, vevents

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("refresh_threads_joined"),
]

ROOM_A, ROOM_B = "room-a@contoso.com", "room-b@contoso.com"
OUTSIDE = "203.0.113.7"  # TEST-NET-3: not in the default ICAL_ALLOWED_NETWORKS


@pytest.fixture
def room_calendar(make_calendar, graph_server):  # type: ignore[no-untyped-def]
    return make_calendar(
        "rooms",
        server=graph_server,
        resources=(ROOM_A, ROOM_B),
        timezone="Europe/Paris",
        cache_persistence=300,
    )


def views(fake_graph, room: str | None = None) -> int:  # type: ignore[no-untyped-def]
    return len(fake_graph.calendar_view_requests(room))


def get(client: Client, calendar_id: str = "rooms", **headers: str):  # type: ignore[no-untyped-def]
    return client.get(f"/ical/{calendar_id}.ics", **headers)


def later(seconds: float) -> time_machine.travel:
    return time_machine.travel(timezone.now() + dt.timedelta(seconds=seconds), tick=True)


def test_feed_merges_the_rooms_into_one_strict_icalendar(client, room_calendar, fake_graph) -> None:  # type: ignore[no-untyped-def]
    response = get(client)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/calendar; charset=utf-8"
    parsed = parse_feed(response.content)
    rooms = {str(event["X-EWS-CALENDAR-RESOURCE"]) for event in vevents(parsed)}
    assert rooms == {ROOM_A, ROOM_B}
    assert len(by_summary(parsed, "Board meeting")) == 2  # same meeting, both rooms
    assert len(by_summary(parsed, "Daily stand-up")) >= 5  # a series, one VEVENT each
    assert not by_summary(parsed, "Cancelled review")  # filterIsCancelled by default
    assert by_summary(parsed, "Private")  # masked by default in a new calendar
    assert not by_summary(parsed, "Doctor")
    assert str(parsed["X-WR-CALNAME"]) == "rooms"


def test_fresh_snapshot_is_served_without_exchange_traffic(
    client, room_calendar, fake_graph
) -> None:  # type: ignore[no-untyped-def]
    first = get(client)
    asked = views(fake_graph)
    assert asked >= 2  # both rooms were read
    with later(299):
        again = get(client)
    assert again.status_code == 200
    assert again.content == first.content
    assert views(fake_graph) == asked


def test_stale_snapshot_is_refreshed_from_exchange(client, room_calendar, fake_graph) -> None:  # type: ignore[no-untyped-def]
    get(client)
    asked_a = views(fake_graph, ROOM_A)
    with later(301):
        response = get(client)
    assert response.status_code == 200
    assert views(fake_graph, ROOM_A) > asked_a


def test_etag_gives_304_when_unchanged(client, room_calendar, fake_graph) -> None:  # type: ignore[no-untyped-def]
    first = get(client)
    etag = first["ETag"]
    assert etag.startswith('"') and etag.endswith('"')
    response = get(client, HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 304
    assert response.content == b""
    assert get(client, HTTP_IF_NONE_MATCH='"something-else"').status_code == 200


def test_if_modified_since_gives_304_when_unchanged(client, room_calendar, fake_graph) -> None:  # type: ignore[no-untyped-def]
    first = get(client)
    response = get(client, HTTP_IF_MODIFIED_SINCE=first["Last-Modified"])
    assert response.status_code == 304
    assert get(client, HTTP_IF_MODIFIED_SINCE="Mon, 01 Jan 2001 00:00:00 GMT").status_code == 200


def test_refresh_with_same_content_keeps_etag_and_last_modified(
    client, room_calendar, fake_graph
) -> None:  # type: ignore[no-untyped-def]
    first = get(client)
    generated = Snapshot.objects.get(calendar=room_calendar).generated
    with later(400):
        second = get(client)
        assert Snapshot.objects.get(calendar=room_calendar).generated > generated
        assert second["ETag"] == first["ETag"]
        assert second["Last-Modified"] == first["Last-Modified"]
        assert get(client, HTTP_IF_NONE_MATCH=first["ETag"]).status_code == 304


def test_changed_content_changes_etag_and_last_modified(client, room_calendar, fake_graph) -> None:  # type: ignore[no-untyped-def]
    first = get(client)
    fake_graph.rooms[ROOM_B][0].subject = "Board meeting (moved)"
    with later(400):
        second = get(client)
    assert second["ETag"] != first["ETag"]
    assert second["Last-Modified"] != first["Last-Modified"]
    assert by_summary(parse_feed(second.content), "Board meeting (moved)")


def test_unknown_calendar_is_404(client, room_calendar) -> None:  # type: ignore[no-untyped-def]
    response = get(client, "nope")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/plain")


def test_outside_the_allowed_networks_is_403(client, room_calendar, fake_graph) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/ical/rooms.ics", REMOTE_ADDR=OUTSIDE)
    assert response.status_code == 403
    assert views(fake_graph) == 0


def test_feed_key_lets_an_outside_player_in(client, room_calendar, fake_graph) -> None:  # type: ignore[no-untyped-def]
    key = room_calendar.feed_key
    response = client.get(f"/ical/rooms.ics?key={key}", REMOTE_ADDR=OUTSIDE)
    assert response.status_code == 200
    parse_feed(response.content)
    assert client.get(f"/ical/rooms.ics?key={key}x", REMOTE_ADDR=OUTSIDE).status_code == 403
    assert client.get("/ical/rooms.ics?key=", REMOTE_ADDR=OUTSIDE).status_code == 403


def test_allowed_networks_setting_is_honoured(client, room_calendar, fake_graph, settings) -> None:  # type: ignore[no-untyped-def]
    settings.ICAL_ALLOWED_NETWORKS = ["203.0.113.0/24"]
    assert client.get("/ical/rooms.ics", REMOTE_ADDR=OUTSIDE).status_code == 200
    assert client.get("/ical/rooms.ics", REMOTE_ADDR="127.0.0.1").status_code == 403


def test_php_connector_url_serves_the_same_feed(client, room_calendar, fake_graph) -> None:  # type: ignore[no-untyped-def]
    feed = get(client)
    legacy = client.get("/plugnCast/.applets/.ews-calendar/2ical.php?calendarId=rooms")
    assert legacy.status_code == 200
    assert legacy.content == feed.content
    assert legacy["Content-Type"] == "text/calendar; charset=utf-8"
    missing = client.get("/plugnCast/.applets/.ews-calendar/2ical.php?calendarId=nope")
    assert missing.status_code == 404


def test_exchange_down_with_send_cache_serves_the_last_good_feed(
    client, room_calendar, fake_graph
) -> None:  # type: ignore[no-untyped-def]
    room_calendar.send_cache_on_server_error = True
    room_calendar.save()
    good = get(client)
    fake_graph.faults.down = True
    with later(600):
        response = get(client)
    assert response.status_code == 200
    assert response.content == good.content
    assert "Revalidation Failed" in response["Warning"]
    status = RefreshStatus.objects.get(calendar=room_calendar)
    assert status.consecutive_failures == 1
    assert status.last_error_code == "connection"
    assert status.last_error_hint


def test_a_password_the_key_cannot_decrypt_still_serves_the_snapshot(
    client, room_calendar, fake_graph
) -> None:  # type: ignore[no-untyped-def]
    from cryptography.fernet import Fernet
    from django.db import connection

    room_calendar.username = "other@contoso.com"
    room_calendar.password = "fake-secret-own"
    room_calendar.save()
    good = get(client)
    stored = "fernet:" + Fernet(Fernet.generate_key()).encrypt(b"fake-secret-own").decode()
    with connection.cursor() as cursor:  # as a database restored without its key
        cursor.execute(
            f"UPDATE {room_calendar._meta.db_table} SET password = %s WHERE id = %s",
            [stored, room_calendar.pk],
        )

    fresh = get(client)

    assert fresh.status_code == 200
    assert fresh.content == good.content


def test_exchange_down_without_send_cache_is_502_in_plain_words(
    client, room_calendar, fake_graph, app_registration
) -> None:  # type: ignore[no-untyped-def]
    get(client)
    fake_graph.faults.down = True
    with later(600):
        response = get(client)
    assert response.status_code == 502
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    text = response.content.decode()
    assert "rooms" in text and len(text) < 300
    assert "Traceback" not in text
    assert app_registration.client_secret not in text


def test_a_502_feed_answer_mails_no_administrator(
    client, room_calendar, fake_graph, settings, mailoutbox
) -> None:  # type: ignore[no-untyped-def]
    # ADMINS get expiry and sign-in mail; a player polling a room while
    # Exchange is down would otherwise mail them on every request.
    settings.ADMINS = [("Ops", "ops@example.com")]
    fake_graph.faults.down = True

    response = get(client)

    assert response.status_code == 502
    assert mailoutbox == []


def test_no_snapshot_and_exchange_down_is_502_even_with_send_cache(
    client, room_calendar, fake_graph
) -> None:  # type: ignore[no-untyped-def]
    room_calendar.send_cache_on_server_error = True
    room_calendar.save()
    fake_graph.faults.down = True
    assert get(client).status_code == 502


def test_exchange_back_up_gives_a_fresh_feed_within_one_period(
    client, room_calendar, fake_graph
) -> None:  # type: ignore[no-untyped-def]
    room_calendar.send_cache_on_server_error = True
    room_calendar.save()
    get(client)
    fake_graph.faults.down = True
    with later(301):
        assert get(client).status_code == 200  # the last good one
    fake_graph.faults.down = False
    fake_graph.rooms[ROOM_A][0].subject = "Back online"
    # Past the feed's back-off after one failure, well within the 300 s period.
    with later(301 + FEED_RETRY_FIRST.total_seconds() + 1):
        response = get(client)
    assert response.status_code == 200
    assert "Warning" not in response
    assert by_summary(parse_feed(response.content), "Back online")
    assert RefreshStatus.objects.get(calendar=room_calendar).consecutive_failures == 0


def test_live_calendar_reads_exchange_on_every_request(
    client, make_calendar, graph_server, fake_graph
) -> None:  # type: ignore[no-untyped-def]
    make_calendar("live", server=graph_server, resources=(ROOM_B,), cache_persistence=0)
    for expected in (1, 2, 3):
        response = get(client, "live")
        assert response.status_code == 200
        assert views(fake_graph, ROOM_B) == expected
    assert "REFRESH-INTERVAL;VALUE=DURATION:PT1M" in response.content.decode()


def test_slow_exchange_is_bounded_by_feed_refresh_timeout(
    client, room_calendar, fake_graph, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.FEED_REFRESH_TIMEOUT = 1
    fake_graph.faults.latency = 1.5
    started = timezone.now()
    response = get(client)
    waited = (timezone.now() - started).total_seconds()
    assert response.status_code == 502
    assert "longer than 1 s" in response.content.decode()
    assert waited < 1.5
    # The refresh went on and the next request finds its snapshot.
    join_background()
    fake_graph.faults.latency = 0
    assert Snapshot.objects.filter(calendar=room_calendar).exists()
    asked = views(fake_graph)
    assert get(client).status_code == 200
    assert views(fake_graph) == asked


def test_a_refresh_in_progress_elsewhere_is_not_repeated(
    client, room_calendar, fake_graph, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.FEED_REFRESH_TIMEOUT = 1
    room_calendar.send_cache_on_server_error = True
    room_calendar.save()
    good = get(client)
    asked = views(fake_graph)
    with later(400):
        # Another process (a worker, or a web process) holds the calendar's refresh.
        RefreshStatus.objects.filter(calendar=room_calendar).update(
            refreshing_until=timezone.now() + dt.timedelta(seconds=60)
        )
        response = get(client)
    assert views(fake_graph) == asked
    assert response.status_code == 200
    assert response.content == good.content


def test_feed_requests_are_counted_by_status(client, room_calendar, fake_graph) -> None:  # type: ignore[no-untyped-def]
    def count(status: str) -> float:
        return metrics.FEED_REQUESTS.labels(status=status)._value.get()

    ok, missing = count("200"), count("404")
    get(client)
    get(client, "nope")
    assert count("200") == ok + 1
    assert count("404") == missing + 1


def test_head_is_answered_and_post_refused(client, room_calendar, fake_graph) -> None:  # type: ignore[no-untyped-def]
    assert client.head("/ical/rooms.ics").status_code == 200
    assert client.post("/ical/rooms.ics").status_code == 405


def test_head_sends_the_length_of_the_feed_and_no_body(client, room_calendar, fake_graph) -> None:  # type: ignore[no-untyped-def]
    # The view itself, not the test client (which strips HEAD bodies as servers would).
    from django.test import RequestFactory

    from connector.views.feed import feed

    body = client.get("/ical/rooms.ics").content
    head = feed(RequestFactory().head("/ical/rooms.ics"), "rooms")
    assert head.status_code == 200
    assert head.content == b""
    assert head["Content-Length"] == str(len(body))
    assert head["ETag"]


def test_post_is_405_even_with_csrf_checks(room_calendar) -> None:  # type: ignore[no-untyped-def]
    client = Client(enforce_csrf_checks=True)

    assert client.post("/ical/rooms.ics").status_code == 405
    legacy = "/plugnCast/.applets/.ews-calendar/2ical.php?calendarId=rooms"
    assert client.post(legacy).status_code == 405


def test_php_connector_debug_mode_hands_over_to_the_console(
    client, room_calendar, fake_graph, staff_user
) -> None:  # type: ignore[no-untyped-def]
    url = "/plugnCast/.applets/.ews-calendar/2ical.php?calendarId=rooms&debug=yes"
    anonymous = client.get(url)
    assert anonymous.status_code == 302  # to the login page, never the trace
    assert "login" in anonymous["Location"]
    client.force_login(staff_user)
    traced = client.get(url)
    assert traced.status_code == 200
    assert not traced["Content-Type"].startswith("text/calendar")
