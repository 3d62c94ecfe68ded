"""What a long-running site meets: a room that keeps failing, a claim left by a dead
process, and refreshes that outlive the request that started them."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from connector.models import RefreshStatus
from connector.services import claims
from connector.services.refresh import (
    FEED_RETRY_FIRST,
    join_background,
    running_in_background,
)
from tests.fixtures.identity import GRAPH_CLIENT_ID

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("refresh_threads_joined"),
]

ROOM_A, ROOM_B = "room-a@contoso.com", "room-b@contoso.com"


def views(fake_graph, room: str) -> int:  # type: ignore[no-untyped-def]
    return len(fake_graph.calendar_view_requests(room))


def at(moment: dt.datetime) -> time_machine.travel:
    return time_machine.travel(moment, tick=False)


def test_a_denied_room_is_not_asked_again_on_every_player_request(
    client: Client, make_calendar, graph_server, fake_graph
) -> None:  # type: ignore[no-untyped-def]
    make_calendar("denied", server=graph_server, resources=(ROOM_B,), cache_persistence=300)
    fake_graph.limit_to(GRAPH_CLIENT_ID, {ROOM_A})  # room B is out of the app's scope
    start = timezone.now()
    with at(start):
        assert client.get("/ical/denied.ics").status_code == 502
    assert views(fake_graph, ROOM_B) == 1
    # Players keep asking: each is answered at once from what is known, Exchange is left alone.
    for second in range(1, int(FEED_RETRY_FIRST.total_seconds())):
        with at(start + dt.timedelta(seconds=second)):
            refused = client.get("/ical/denied.ics")
        assert refused.status_code == 502
        assert b"could not be read" in refused.content
    assert views(fake_graph, ROOM_B) == 1
    # The back-off has passed: one more try, which fails again; the next wait is twice as long.
    with at(start + FEED_RETRY_FIRST + dt.timedelta(seconds=1)):
        client.get("/ical/denied.ics")
    assert views(fake_graph, ROOM_B) == 2
    second_failure = RefreshStatus.objects.get(calendar__calendar_id="denied").last_error_at
    with at(second_failure + FEED_RETRY_FIRST + dt.timedelta(seconds=1)):
        client.get("/ical/denied.ics")
    assert views(fake_graph, ROOM_B) == 2
    with at(second_failure + 2 * FEED_RETRY_FIRST + dt.timedelta(seconds=1)):
        client.get("/ical/denied.ics")
    assert views(fake_graph, ROOM_B) == 3


def test_the_back_off_grows_no_longer_than_the_period(
    client: Client, make_calendar, graph_server, fake_graph
) -> None:  # type: ignore[no-untyped-def]
    calendar = make_calendar(
        "often", server=graph_server, resources=(ROOM_B,), cache_persistence=60
    )
    fake_graph.limit_to(GRAPH_CLIENT_ID, {ROOM_A})
    client.get("/ical/often.ics")
    RefreshStatus.objects.filter(calendar=calendar).update(consecutive_failures=30)
    failed_at = RefreshStatus.objects.get(calendar=calendar).last_error_at
    with at(failed_at + dt.timedelta(seconds=59)):
        client.get("/ical/often.ics")
    assert views(fake_graph, ROOM_B) == 1
    with at(failed_at + dt.timedelta(seconds=61)):
        client.get("/ical/often.ics")
    assert views(fake_graph, ROOM_B) == 2


def test_during_the_back_off_the_last_good_copy_is_served_at_once(
    client: Client, make_calendar, graph_server, fake_graph
) -> None:  # type: ignore[no-untyped-def]
    make_calendar(
        "kept",
        server=graph_server,
        resources=(ROOM_B,),
        cache_persistence=60,
        send_cache_on_server_error=True,
    )
    good = client.get("/ical/kept.ics").content
    fake_graph.faults.down = True
    start = timezone.now() + dt.timedelta(seconds=61)
    with at(start):
        assert client.get("/ical/kept.ics").content == good
    fake_graph.faults.latency = 30.0  # a try now would hang the request
    fake_graph.faults.down = False
    with at(start + dt.timedelta(seconds=2)):
        began = time.monotonic()
        answer = client.get("/ical/kept.ics")
        assert time.monotonic() - began < 1.0
    assert answer.status_code == 200 and answer.content == good
    assert answer["Warning"] == '111 - "Revalidation Failed"'
    fake_graph.faults.latency = 0.0


def test_requests_do_not_pile_up_behind_the_retry_of_a_failing_calendar(
    client: Client, make_calendar, graph_server, fake_graph
) -> None:  # type: ignore[no-untyped-def]
    """While one request retries a failing calendar, the others answer at once."""
    calendar = make_calendar("denied", server=graph_server, resources=(ROOM_B,))
    fake_graph.limit_to(GRAPH_CLIENT_ID, {ROOM_A})
    assert client.get("/ical/denied.ics").status_code == 502
    failed_at = RefreshStatus.objects.get(calendar=calendar).last_error_at
    # Past the back-off, another process is retrying it right now (its lease is live).
    RefreshStatus.objects.filter(calendar=calendar).update(
        refreshing_until=timezone.now() + dt.timedelta(minutes=5),
        refreshing_by="another-host:4242:1234",
    )
    with at(failed_at + FEED_RETRY_FIRST + dt.timedelta(seconds=1)):
        began = time.monotonic()
        answer = client.get("/ical/denied.ics")
        waited = time.monotonic() - began
    assert answer.status_code == 502 and b"denied access" in answer.content
    assert waited < 1.0
    assert views(fake_graph, ROOM_B) == 1


def test_a_healthy_calendar_being_refreshed_is_still_waited_for(
    client: Client, make_calendar, graph_server, fake_graph, settings
) -> None:  # type: ignore[no-untyped-def]
    """No failure in its history: a request waits for the refresh in progress."""
    settings.FEED_REFRESH_TIMEOUT = 1.0
    calendar = make_calendar("hall", server=graph_server, resources=(ROOM_A,))
    RefreshStatus.objects.create(
        calendar=calendar,
        refreshing_until=timezone.now() + dt.timedelta(minutes=5),
        refreshing_by="another-host:4242:1234",
    )
    began = time.monotonic()
    answer = client.get("/ical/hall.ics")
    assert time.monotonic() - began >= 1.0  # it waited for the other's refresh
    assert answer.status_code == 502 and b"did not finish in time" in answer.content


def _finished_process() -> str:
    """The claim owner name of a process of this host that has ended."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(done.stdout)
    return f"{claims._host()}:{pid}:1"


def test_a_claim_left_by_a_killed_process_is_taken_over_at_once(
    client: Client, make_calendar, graph_server, fake_graph
) -> None:  # type: ignore[no-untyped-def]
    calendar = make_calendar("rooms", server=graph_server, resources=(ROOM_A,))
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        alive = f"{claims._host()}:{worker.pid}:{claims._start_time(worker.pid)}"
        RefreshStatus.objects.create(
            calendar=calendar,
            refreshing_until=timezone.now() + dt.timedelta(seconds=90),
            refreshing_by=alive,
        )
        assert not claims.claim(calendar, now=timezone.now())  # its owner runs: respected
        worker.kill()  # kill -9 mid-refresh
        worker.wait()
        began = time.monotonic()
        answer = client.get("/ical/rooms.ics")
        assert time.monotonic() - began < 5.0
    finally:
        worker.kill()
    assert answer.status_code == 200
    assert views(fake_graph, ROOM_A) == 1
    status = RefreshStatus.objects.get(calendar=calendar)
    assert status.refreshing_until is None and status.refreshing_by == ""


def test_a_reused_pid_does_not_keep_a_dead_claim_alive(make_calendar, graph_server) -> None:  # type: ignore[no-untyped-def]
    calendar = make_calendar("rooms", server=graph_server, resources=(ROOM_A,))
    # This very pid, but started at another moment: the claim's owner is gone.
    other_start = f"{claims._host()}:{os.getpid()}:{int(claims._start_time(os.getpid())) + 1}"
    RefreshStatus.objects.create(
        calendar=calendar,
        refreshing_until=timezone.now() + dt.timedelta(seconds=90),
        refreshing_by=other_start,
    )
    assert claims.claim(calendar, now=timezone.now())


def test_another_hosts_claim_holds_until_its_lease_runs_out(make_calendar, graph_server) -> None:  # type: ignore[no-untyped-def]
    calendar = make_calendar("rooms", server=graph_server, resources=(ROOM_A,))
    now = timezone.now()
    RefreshStatus.objects.create(
        calendar=calendar,
        refreshing_until=now + claims.LEASE,
        refreshing_by="another-host:4242:1234",
    )
    assert not claims.claim(calendar, now=now)
    assert claims.claim(calendar, now=now + claims.LEASE + dt.timedelta(seconds=1))
    assert RefreshStatus.objects.get(calendar=calendar).refreshing_by == claims.owner()


def test_a_dead_owners_claim_is_not_waited_for(make_calendar, graph_server) -> None:  # type: ignore[no-untyped-def]
    calendar = make_calendar("rooms", server=graph_server, resources=(ROOM_A,))
    RefreshStatus.objects.create(
        calendar=calendar,
        refreshing_until=timezone.now() + dt.timedelta(seconds=90),
        refreshing_by=_finished_process(),
    )
    began = time.monotonic()
    assert claims.wait_for_release(calendar, timeout=5.0)
    assert time.monotonic() - began < 1.0


def test_a_long_refresh_keeps_its_claim_alive(
    settings, make_calendar, graph_server, fake_graph
) -> None:  # type: ignore[no-untyped-def]
    """The lease is renewed while the round runs: nobody takes over a live refresh."""
    calendar = make_calendar("rooms", server=graph_server, resources=(ROOM_A,))
    with claims.kept([calendar]):
        assert claims.claim(calendar, now=timezone.now())
        first = RefreshStatus.objects.get(calendar=calendar).refreshing_until
        time.sleep(claims.RENEW_EVERY + 1.0)
        renewed = RefreshStatus.objects.get(calendar=calendar).refreshing_until
    assert renewed is not None and first is not None and renewed > first
    claims.release(calendar)


def test_refreshes_left_running_by_requests_are_let_go_when_they_end(
    client: Client, settings, make_calendar, graph_server, fake_graph
) -> None:  # type: ignore[no-untyped-def]
    """A web worker serving for months keeps no trace of the refreshes it waited for."""
    settings.FEED_REFRESH_TIMEOUT = 0.2
    for number in range(5):
        make_calendar(f"slow{number}", server=graph_server, resources=(ROOM_A,))
    fake_graph.faults.latency = 0.6
    for number in range(5):
        # One at a time: the in-memory test database takes one writer at once.
        assert client.get(f"/ical/slow{number}.ics").status_code == 502  # not waited for
        assert running_in_background() == 1
        deadline = time.monotonic() + 20
        while running_in_background() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running_in_background() == 0
    fake_graph.faults.latency = 0.0
    join_background()
