"""Scale-out: two django-q2 clusters on PostgreSQL + Redis refresh each calendar once per period.

A fresh PostgreSQL database and an empty Redis database are made for the
test; the calendars (periods of 60 and 120 s) read the fake Exchange of this
process. Two ``manage.py qcluster`` processes (two workers each) run until
the dispatcher has done three rounds of work (about two and a half minutes).
Then each 60 s calendar was refreshed exactly once per round, no two refreshes
of a calendar came closer than its period, and each room got exactly one
FindItem per round although two calendars show it and four workers in two
clusters ran the same schedule: nothing lost, nothing doubled.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter

import pytest

from tests.fixtures.exchange import EWS_DELEGATE
from tests.helpers_process import EWS_SETUP, ROOT, clean_env, ews_env, migrate_and_set_up

pytestmark = pytest.mark.scaleout

PG = "postgresql://postgres@127.0.0.1:5432"
REDIS = "redis://127.0.0.1:6379"
ROUNDS = 3
# Seconds the clusters may take for ROUNDS dispatches and their refreshes: about 160 s
# alone; the scheduler looks every 30 s, and beside the rest of the suite on two cores
# each look may come late. The loop ends as soon as the work is done.
BUDGET = 320.0
EMPTY = "empty-room@contoso.com"

# calendar id → (rooms, cachePersistence)
LAYOUT = {
    "a": (["room-a@contoso.com"], 60),
    "b": (["room-b@contoso.com"], 60),
    "ab": (["room-a@contoso.com", "room-b@contoso.com"], 60),
    "hall": (["big-hall@contoso.com"], 60),
    "slow": ([EMPTY], 120),
}

SETUP = (
    EWS_SETUP
    + """
import json

for calendar_id, (rooms, period) in json.loads(os.environ["T_LAYOUT"]).items():
    add_calendar(calendar_id, ews, rooms, cache_persistence=period)
"""
)


def _reachable() -> str:
    """Why the test cannot run here, or '' when PostgreSQL and Redis answer."""
    try:
        import psycopg

        psycopg.connect(f"{PG}/postgres", connect_timeout=3).close()
    except Exception as exc:
        return f"PostgreSQL at 127.0.0.1:5432 is unreachable ({exc.__class__.__name__})"
    try:
        import redis

        redis.Redis.from_url(f"{REDIS}/0", socket_connect_timeout=3).ping()
    except Exception as exc:
        return f"Redis at 127.0.0.1:6379 is unreachable ({exc.__class__.__name__})"
    return ""


@pytest.fixture
def postgres_url():  # type: ignore[no-untyped-def]
    reason = _reachable()
    if reason:
        pytest.skip(reason)
    import psycopg

    name = f"ews_scaleout_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{PG}/{name}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_url():  # type: ignore[no-untyped-def]
    import redis

    for number in range(15, 0, -1):
        client = redis.Redis.from_url(f"{REDIS}/{number}")
        if client.dbsize() == 0:
            break
    else:
        pytest.skip("no empty Redis database (1-15) to use")
    yield f"{REDIS}/{number}"
    for key in client.scan_iter("django_q:*"):
        client.delete(key)


def tasks(url: str, func: str) -> list[tuple[float, bool, str]]:
    """(started as a UNIX time, success, result) of the finished tasks running ``func``."""
    import psycopg
    from picklefield.fields import dbsafe_decode

    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT started, success, result FROM django_q_task WHERE func = %s ORDER BY started",
            (func,),
        ).fetchall()
    # django-q2 keeps results in a PickledObjectField (base64 of a pickle).
    return [
        (started.timestamp(), bool(success), str(dbsafe_decode(result)))
        for started, success, result in rows
    ]


def queued_by(dispatch: str) -> int:
    found = re.search(r"(\d+) refresh tasks queued", dispatch)
    assert found, dispatch
    return int(found.group(1))


def test_two_clusters_refresh_every_calendar_exactly_once_per_period(  # type: ignore[no-untyped-def]
    tmp_path, postgres_url, redis_url, fake_ews
) -> None:
    import json

    fake_ews.grant(EWS_DELEGATE, EMPTY)
    env = clean_env(
        tmp_path,
        **ews_env(fake_ews),
        DATABASE_URL=postgres_url,
        REDIS_URL=redis_url,
        Q_WORKERS="2",
        T_LAYOUT=json.dumps(LAYOUT),
    )
    migrate_and_set_up(env, SETUP)

    # The dispatcher's first run when the clusters are up (migrate set it to "now").
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(
            "UPDATE django_q_schedule SET next_run = now() + interval '20 seconds' "
            "WHERE func = 'connector.tasks.dispatch_refreshes'"
        )
    logs = [tmp_path / f"cluster-{n}.log" for n in (1, 2)]
    clusters = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "qcluster"],
            cwd=ROOT,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for log in logs
    ]
    dispatches: list[tuple[float, bool, str]] = []
    refreshes: list[tuple[float, bool, str]] = []
    try:
        deadline = time.monotonic() + BUDGET
        while time.monotonic() < deadline:
            dispatches = tasks(postgres_url, "connector.tasks.dispatch_refreshes")
            refreshes = tasks(postgres_url, "connector.tasks.refresh_group")
            rounds = [d for d in dispatches if queued_by(d[2])]
            if len(rounds) >= ROUNDS and len(refreshes) >= sum(queued_by(d[2]) for d in rounds):
                break
            assert all(c.poll() is None for c in clusters), "a cluster died"
            time.sleep(0.5)  # waiting on real processes, not on simulated time
    finally:
        for cluster in clusters:
            cluster.send_signal(signal.SIGTERM)
        for cluster in clusters:
            try:
                cluster.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(cluster.pid, signal.SIGKILL)
                cluster.wait()
    output = "\n".join(log.read_text()[-3000:] for log in logs)
    rounds = [d for d in dispatches if queued_by(d[2])]
    assert len(rounds) == ROUNDS, (dispatches, output)
    assert all(success for _, success, _ in dispatches + refreshes), (dispatches, refreshes)

    # Per calendar: one successful refresh per period, none failed, none doubled.
    times: dict[str, list[float]] = {}
    for started, _, result in refreshes:
        for line in result.split("; "):
            assert ": ok, " in line, line
            times.setdefault(line.split(":")[0], []).append(started)
    for calendar_id, (_, period) in LAYOUT.items():
        seen = times.get(calendar_id, [])
        gaps = [later - earlier for earlier, later in zip(seen, seen[1:], strict=False)]
        # django-q2's scheduler looks every 30 s, so a round may come up to that late,
        # but never early: two refreshes of a calendar are a period apart at least.
        assert all(gap > period - 6 for gap in gaps), (calendar_id, gaps)
        if period == 60:
            assert len(seen) == ROUNDS, (calendar_id, seen)
        else:
            assert 1 <= len(seen) <= 1 + (seen[-1] - seen[0]) // (period - 6), (calendar_id, seen)
    per_calendar = {calendar_id: len(seen) for calendar_id, seen in times.items()}

    # Per room: one FindItem per round, although room-a and room-b are shown by two
    # calendars each and two clusters with two workers each were running.
    found = Counter(op.mailboxes[0] for op in fake_ews.ops if op.operation == "FindItem")
    assert found == {
        "room-a@contoso.com": ROUNDS,
        "room-b@contoso.com": ROUNDS,
        "big-hall@contoso.com": ROUNDS,
        EMPTY: per_calendar["slow"],
    }, fake_ews.ops

    # Both clusters were alive (each beats under its own name) and every snapshot is there.
    with psycopg.connect(postgres_url) as connection:
        beats = connection.execute("SELECT count(*) FROM connector_workerheartbeat").fetchone()
        snapshots = connection.execute("SELECT count(*) FROM connector_snapshot").fetchone()
        failing = connection.execute(
            "SELECT count(*) FROM connector_refreshstatus WHERE consecutive_failures > 0"
        ).fetchone()
    assert beats is not None and beats[0] >= 2
    assert snapshots is not None and snapshots[0] == len(LAYOUT)
    assert failing is not None and failing[0] == 0
