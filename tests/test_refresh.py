"""Refresh rounds against the fake Exchange: rooms fetched once, failures isolated, recorded."""

from __future__ import annotations

import datetime as dt
from urllib.parse import unquote

import pytest
from django.utils import timezone

from connector.models import RefreshStatus, Snapshot
from connector.services.refresh import RefreshOutcome, refresh_calendar, refresh_calendars
from tests.fixtures.feed import parse_feed, vevents
from tests.fixtures.identity import GRAPH_CLIENT_ID

ROOM_A, ROOM_B, HALL = "room-a@contoso.com", "room-b@contoso.com", "big-hall@contoso.com"


def views(fake_graph, room: str | None = None) -> list:  # type: ignore[no-untyped-def]
    return fake_graph.calendar_view_requests(room)


def summaries(calendar) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(e["SUMMARY"]) for e in vevents(parse_feed(calendar.snapshot.ics))]


def test_a_room_shown_by_several_calendars_is_fetched_once(
    make_calendar, graph_server, fake_graph
) -> None:  # type: ignore[no-untyped-def]
    short = make_calendar(
        "short", server=graph_server, resources=(ROOM_A,), request_window=1, timezone="UTC"
    )
    wide = make_calendar(
        "wide",
        server=graph_server,
        resources=(ROOM_A, ROOM_B),
        request_window=14,
        timezone="America/New_York",
    )
    outcomes = refresh_calendars([short, wide])
    assert [outcome.ok for outcome in outcomes] == [True, True]
    (asked,) = views(fake_graph, ROOM_A)
    assert len(views(fake_graph, ROOM_B)) == 1
    # One request with the widest window: from the earliest midnight to the latest end.
    start = dt.datetime.fromisoformat(asked.arg("startDateTime").replace("Z", "+00:00"))
    end = dt.datetime.fromisoformat(asked.arg("endDateTime").replace("Z", "+00:00"))

    now = timezone.now()
    assert start == min(short.window(now).start, wide.window(now).start)
    assert end == max(short.window(now).end, wide.window(now).end)
    # Each calendar is clipped to its own window.
    short.refresh_from_db()
    wide.refresh_from_db()
    assert summaries(short).count("Daily stand-up") == 1  # today's only
    assert summaries(wide).count("Daily stand-up") == 8
    assert short.snapshot.event_count < wide.snapshot.event_count


def test_one_broken_room_fails_only_the_calendars_showing_it(
    make_calendar, graph_server, fake_graph
) -> None:  # type: ignore[no-untyped-def]
    fake_graph.block_by_access_policy(GRAPH_CLIENT_ID, ROOM_B)
    only_a = make_calendar("only-a", server=graph_server, resources=(ROOM_A,))
    both = make_calendar("both", server=graph_server, resources=(ROOM_A, ROOM_B))
    hall = make_calendar("hall", server=graph_server, resources=(HALL,))
    ok_a, failed, ok_hall = refresh_calendars([only_a, both, hall])
    assert ok_a.ok and ok_hall.ok
    assert not failed.ok
    assert failed.error and failed.hint and failed.code
    assert Snapshot.objects.filter(calendar=only_a).exists()
    assert Snapshot.objects.filter(calendar=hall).exists()
    assert not Snapshot.objects.filter(calendar=both).exists()
    assert len(views(fake_graph, ROOM_A)) == 1


def test_failed_refresh_records_error_and_keeps_the_last_good_snapshot(
    make_calendar, graph_server, fake_graph
) -> None:  # type: ignore[no-untyped-def]
    calendar = make_calendar("rooms", server=graph_server, resources=(ROOM_A,))
    assert refresh_calendar(calendar).ok
    good = Snapshot.objects.get(calendar=calendar)
    fake_graph.faults.down = True
    later = timezone.now() + dt.timedelta(minutes=10)
    outcome = refresh_calendar(calendar, now=later)
    assert not outcome.ok
    assert outcome.code == "connection"
    status = RefreshStatus.objects.get(calendar=calendar)
    assert status.last_error == outcome.error
    assert status.last_error_hint == outcome.hint
    assert status.last_error_code == "connection"
    assert status.last_error_at >= later
    assert status.last_attempt == later
    assert status.consecutive_failures == 1
    assert status.refreshing_until is None
    kept = Snapshot.objects.get(calendar=calendar)
    assert (kept.ics, kept.generated) == (good.ics, good.generated)


def test_success_after_failures_resets_the_count_and_keeps_the_error_history(
    make_calendar, graph_server, fake_graph
) -> None:  # type: ignore[no-untyped-def]
    calendar = make_calendar("rooms", server=graph_server, resources=(ROOM_A,))
    fake_graph.faults.down = True
    assert not refresh_calendar(calendar).ok
    assert not refresh_calendar(calendar).ok
    assert RefreshStatus.objects.get(calendar=calendar).consecutive_failures == 2
    fake_graph.faults.down = False
    assert refresh_calendar(calendar).ok
    status = RefreshStatus.objects.get(calendar=calendar)
    assert status.consecutive_failures == 0
    assert status.last_success > status.last_error_at
    assert status.last_error  # what last went wrong, for the status page


def test_a_claimed_calendar_is_skipped(make_calendar, graph_server, fake_graph) -> None:  # type: ignore[no-untyped-def]
    calendar = make_calendar("rooms", server=graph_server, resources=(ROOM_A,))
    RefreshStatus.objects.create(
        calendar=calendar, refreshing_until=timezone.now() + dt.timedelta(minutes=1)
    )
    outcome = refresh_calendar(calendar)
    assert outcome.skipped
    assert views(fake_graph) == []
    assert "already being refreshed" in outcome.line()


def test_an_expired_claim_is_taken_over(make_calendar, graph_server, fake_graph) -> None:  # type: ignore[no-untyped-def]
    calendar = make_calendar("rooms", server=graph_server, resources=(ROOM_A,))
    RefreshStatus.objects.create(
        calendar=calendar, refreshing_until=timezone.now() - dt.timedelta(seconds=1)
    )
    assert refresh_calendar(calendar).ok


def test_outcome_lines() -> None:
    ok = RefreshOutcome("hall", ok=True, event_count=12, duration=0.25, changed=True)
    assert ok.line() == "hall: ok, 12 events, 0.25 s, changed"
    failed = RefreshOutcome(
        "rooms", ok=False, duration=1.5, error="Could not connect.", hint="Check the firewall."
    )
    assert failed.line() == (
        "rooms: failed, 0 events, 1.50 s — Could not connect. Hint: Check the firewall."
    )


def test_refresh_requests_carry_the_room_in_the_url(
    make_calendar, graph_server, fake_graph
) -> None:  # type: ignore[no-untyped-def]
    # Guards the helper above: the fake's log tells rooms apart.
    calendar = make_calendar("rooms", server=graph_server, resources=(ROOM_B,))
    refresh_calendar(calendar)
    (request,) = views(fake_graph)
    assert ROOM_B in unquote(request.path)


@pytest.mark.django_db(transaction=True)
def test_a_bounded_refresh_reports_a_timeout_and_finishes_later(
    make_calendar, graph_server, fake_graph
) -> None:  # type: ignore[no-untyped-def]
    from connector.services.refresh import join_background

    calendar = make_calendar("rooms", server=graph_server, resources=(ROOM_A,))
    fake_graph.faults.latency = 1.0
    outcome = refresh_calendar(calendar, timeout=0.3)
    assert not outcome.ok and outcome.code == "timeout"
    join_background()
    status = RefreshStatus.objects.get(calendar=calendar)
    assert status.consecutive_failures == 0  # the round finished and said so
    assert Snapshot.objects.filter(calendar=calendar).exists()
