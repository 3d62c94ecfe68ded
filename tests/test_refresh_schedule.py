"""Background refresh: due calendars claimed exactly once, schedules that follow calendars."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from django_q.models import OrmQ, Schedule
from django_q.signals import post_spawn

from connector.models import Alarm, Calendar, RefreshStatus, Resource, WorkerHeartbeat
from connector.schedules import DISPATCH, ensure_schedules
from connector.services.refresh import DUE_SLACK, claim_due, next_slot
from connector.services.rounds import group_by_rooms
from connector.tasks import dispatch_refreshes, heartbeat, worker_name

UTC = dt.UTC
T0 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
MINUTE = dt.timedelta(minutes=1)


def ids(calendars: list[Calendar]) -> list[str]:
    return sorted(calendar.calendar_id for calendar in calendars)


def next_refresh(calendar: Calendar) -> dt.datetime | None:
    return RefreshStatus.objects.get(calendar=calendar).next_refresh


def test_new_calendars_are_due_at_once(make_calendar) -> None:  # type: ignore[no-untyped-def]
    make_calendar("a", cache_persistence=60)
    make_calendar("b", cache_persistence=300, resources=("room-b@contoso.com",))
    assert ids(claim_due(T0)) == ["a", "b"]


def test_a_due_calendar_is_claimed_once(make_calendar) -> None:  # type: ignore[no-untyped-def]
    calendar = make_calendar("a", cache_persistence=60)
    assert ids(claim_due(T0)) == ["a"]
    assert claim_due(T0) == []  # a second worker at the same moment gets nothing
    assert claim_due(T0 + dt.timedelta(seconds=30)) == []
    assert next_refresh(calendar) == T0 + MINUTE


def test_each_calendar_on_its_own_period(make_calendar) -> None:  # type: ignore[no-untyped-def]
    make_calendar("fast", cache_persistence=60)
    make_calendar("slow", cache_persistence=180, resources=("room-b@contoso.com",))
    claimed = {minute: ids(claim_due(T0 + minute * MINUTE)) for minute in range(7)}
    assert claimed == {
        0: ["fast", "slow"],
        1: ["fast"],
        2: ["fast"],
        3: ["fast", "slow"],
        4: ["fast"],
        5: ["fast"],
        6: ["fast", "slow"],
    }


def test_the_grid_does_not_drift_when_dispatch_is_late(make_calendar) -> None:  # type: ignore[no-untyped-def]
    calendar = make_calendar("a", cache_persistence=60)
    claim_due(T0)
    assert ids(claim_due(T0 + MINUTE + dt.timedelta(seconds=20))) == ["a"]  # 20 s late
    assert next_refresh(calendar) == T0 + 2 * MINUTE


def test_a_dispatch_a_little_early_still_counts(make_calendar) -> None:  # type: ignore[no-untyped-def]
    claim_due_at = T0 + MINUTE - DUE_SLACK
    make_calendar("a", cache_persistence=60)
    claim_due(T0)
    assert ids(claim_due(claim_due_at)) == ["a"]


def test_missed_periods_are_skipped_not_caught_up(make_calendar) -> None:  # type: ignore[no-untyped-def]
    calendar = make_calendar("a", cache_persistence=60)
    claim_due(T0)
    # No worker for five and a half minutes: one refresh now, then back on the grid.
    back = T0 + dt.timedelta(minutes=5, seconds=30)
    assert ids(claim_due(back)) == ["a"]
    assert next_refresh(calendar) == T0 + 6 * MINUTE
    assert claim_due(back + dt.timedelta(seconds=1)) == []


def test_next_slot() -> None:
    period = dt.timedelta(seconds=90)
    assert next_slot(None, period, T0) == T0 + period
    assert next_slot(T0, period, T0 + dt.timedelta(seconds=10)) == T0 + period
    assert next_slot(T0, period, T0 + dt.timedelta(seconds=200)) == T0 + 3 * period


def test_live_calendars_are_left_to_their_feed(make_calendar) -> None:  # type: ignore[no-untyped-def]
    make_calendar("live", cache_persistence=0)
    assert claim_due(T0) == []


def test_calendars_whose_rooms_are_fetched_anyway_are_rebuilt_with_them(make_calendar) -> None:  # type: ignore[no-untyped-def]
    fast = make_calendar("fast", cache_persistence=60, resources=("room-a@contoso.com",))
    slow = make_calendar("slow", cache_persistence=600, resources=("room-a@contoso.com",))
    other = make_calendar(
        "other", cache_persistence=600, resources=("room-a@contoso.com", "room-b@contoso.com")
    )
    claim_due(T0)
    assert ids(claim_due(T0 + MINUTE)) == ["fast", "slow"]  # room-a is read once for both
    assert next_refresh(slow) == T0 + MINUTE + dt.timedelta(seconds=600)
    assert next_refresh(fast) == T0 + 2 * MINUTE
    assert next_refresh(other) == T0 + dt.timedelta(seconds=600)


def test_calendars_sharing_rooms_are_grouped(make_calendar) -> None:  # type: ignore[no-untyped-def]
    a = make_calendar("a", resources=("room-a@contoso.com",))
    ab = make_calendar("ab", resources=("room-b@contoso.com", "ROOM-A@contoso.com"))
    c = make_calendar("c", resources=("big-hall@contoso.com",))
    b = make_calendar("b", resources=("room-b@contoso.com",))
    groups = sorted(ids(group) for group in group_by_rooms([a, c, b, ab]))
    assert groups == [["a", "ab", "b"], ["c"]]


def test_changing_a_calendar_makes_it_due(make_calendar) -> None:  # type: ignore[no-untyped-def]
    calendar = make_calendar("a", cache_persistence=300)
    claim_due(T0)
    assert next_refresh(calendar) is not None
    calendar.label = "New name"
    calendar.save()
    assert next_refresh(calendar) is None
    assert ids(claim_due(T0 + MINUTE)) == ["a"]


@pytest.mark.parametrize("change", ["resource", "filter", "alarm", "resource-deleted"])
def test_changing_what_a_calendar_shows_makes_it_due(make_calendar, change: str) -> None:  # type: ignore[no-untyped-def]
    calendar = make_calendar("a", cache_persistence=300)
    claim_due(T0)
    if change == "resource":
        Resource.objects.create(calendar=calendar, address="room-b@contoso.com", position=1)
    elif change == "filter":
        calendar.filter.subject = "*##*"
        calendar.filter.save()
    elif change == "alarm":
        Alarm.objects.create(calendar=calendar, edge="start", related="day-start", offset=0)
    else:
        calendar.resources.first().delete()
    assert next_refresh(calendar) is None


def test_deleting_a_calendar_removes_its_schedule_state(make_calendar) -> None:  # type: ignore[no-untyped-def]
    calendar = make_calendar("a", cache_persistence=300)
    claim_due(T0)
    calendar.delete()
    assert not RefreshStatus.objects.exists()
    assert claim_due(T0 + 10 * MINUTE) == []


def test_dispatch_queues_one_task_per_round_and_beats(make_calendar, ics_server) -> None:  # type: ignore[no-untyped-def]
    # One server's calendars fill one round (its slots busy), whether or not they share a
    # room; another server's go in a round, hence a task, of their own.
    from connector.models import Server

    other = Server.objects.create(
        server_id="other", type=Server.Type.ICS, base_uri=ics_server.base_uri
    )
    make_calendar("a", resources=("room-a@contoso.com",))
    make_calendar("ab", resources=("room-a@contoso.com", "room-b@contoso.com"))
    make_calendar("hall", resources=("big-hall@contoso.com",))
    make_calendar("annex", server=other, resources=("annex@contoso.com",))
    before = OrmQ.objects.count()
    summary = dispatch_refreshes()
    assert summary == "4 calendars due, 2 refresh tasks queued"
    assert OrmQ.objects.count() == before + 2
    queued = sorted(str(task.task["name"]) for task in OrmQ.objects.all()[before:])
    assert queued == ["refresh a, ab, hall", "refresh annex"]
    assert dispatch_refreshes() == "0 calendars due, 0 refresh tasks queued"
    beat = WorkerHeartbeat.objects.get(name=worker_name())
    assert (timezone.now() - beat.seen).total_seconds() < 5


def test_a_heartbeat_drops_the_rows_of_clusters_gone_for_an_hour(db: None) -> None:
    now = timezone.now()
    WorkerHeartbeat.objects.create(name="host:100", seen=now - dt.timedelta(hours=3), pid=101)
    WorkerHeartbeat.objects.create(name="host:200", seen=now - dt.timedelta(minutes=61), pid=201)
    WorkerHeartbeat.objects.create(name="host:300", seen=now - dt.timedelta(minutes=20), pid=301)

    heartbeat()

    assert set(WorkerHeartbeat.objects.values_list("name", flat=True)) == {
        "host:300",  # stopped recently: still shown on the status page, not counted
        worker_name(),
    }


def test_the_newest_heartbeat_is_never_pruned_by_its_own_cluster(db: None) -> None:
    long_ago = timezone.now() - dt.timedelta(days=2)
    WorkerHeartbeat.objects.create(name=worker_name(), seen=long_ago, pid=1)

    heartbeat()

    (beat,) = WorkerHeartbeat.objects.all()
    assert beat.name == worker_name() and beat.seen > long_ago


def test_the_dispatcher_schedule_exists_once_and_is_repaired(db: None) -> None:
    ensure_schedules()
    ensure_schedules()
    (schedule,) = Schedule.objects.filter(name=DISPATCH)
    assert schedule.func == "connector.tasks.dispatch_refreshes"
    assert (schedule.schedule_type, schedule.minutes, schedule.repeats) == (Schedule.MINUTES, 1, -1)
    schedule.minutes = 60
    schedule.repeats = 0
    schedule.save()
    ensure_schedules()
    schedule.refresh_from_db()
    assert (schedule.minutes, schedule.repeats) == (1, -1)


def test_a_starting_worker_checks_the_schedule_and_beats(db: None) -> None:
    Schedule.objects.filter(name=DISPATCH).delete()
    post_spawn.send(sender="django_q", proc_name="Worker-1")
    assert Schedule.objects.filter(name=DISPATCH).count() == 1
    assert WorkerHeartbeat.objects.filter(name=worker_name()).exists()
