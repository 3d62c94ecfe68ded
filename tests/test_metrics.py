"""/metrics: Prometheus text, from ICAL_ALLOWED_NETWORKS or for staff."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from accounts.models import AppRegistration
from connector.core import metrics
from connector.models import Calendar, RefreshStatus, Server, Snapshot
from tests.fixtures.users import TEST_PASSWORD

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
OUTSIDE = "203.0.113.9"  # TEST-NET-3, not in ICAL_ALLOWED_NETWORKS


@pytest.fixture
def calendars(db: None) -> None:
    app = AppRegistration.objects.create(
        name="contoso",
        tenant="t",
        client_id="c",
        client_secret="fake-secret-metrics",
        secret_expires=dt.date(2026, 12, 1),
    )
    server = Server.objects.create(server_id="o365", type="graph", app_registration=app)
    hall = Calendar.objects.create(calendar_id="hall", server=server, cache_persistence=300)
    Snapshot.objects.create(
        calendar=hall,
        ics="",
        etag="e",
        generated=NOW - dt.timedelta(seconds=90),
        changed=NOW,
        event_count=7,
    )
    lobby = Calendar.objects.create(calendar_id="lobby", server=server)
    RefreshStatus.objects.create(
        calendar=lobby,
        last_attempt=NOW,
        last_error="Access denied",
        last_error_at=NOW,
        consecutive_failures=1,
    )


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def scrape(client: Client, **extra: str) -> tuple[int, str]:
    with time_machine.travel(NOW, tick=False):
        response = client.get("/metrics", **extra)  # type: ignore[arg-type]
    return response.status_code, response.content.decode()


def test_database_gauges_are_computed_at_scrape_time(client: Client, calendars: None) -> None:
    status, text = scrape(client)
    assert status == 200
    found = samples(text)
    assert found[("ews_calendar_snapshot_age_seconds", (("calendar", "hall"),))] == 90
    assert found[("ews_calendar_snapshot_events", (("calendar", "hall"),))] == 7
    assert found[("ews_calendar_calendar_failing", (("calendar", "lobby"),))] == 1
    assert found[("ews_calendar_calendar_failing", (("calendar", "hall"),))] == 0
    assert found[("ews_calendar_failing_calendars", ())] == 1
    assert found[("ews_calendar_secret_expiry_days", (("app_registration", "contoso"),))] == 11
    assert "fake-secret" not in text


def test_counters_of_this_process_are_served(client: Client, calendars: None) -> None:
    before = samples(scrape(client)[1]).get(
        ("ews_calendar_refreshes_total", (("outcome", "error"),)), 0
    )
    metrics.REFRESHES.labels(outcome="error").inc()
    metrics.FEED_REQUESTS.labels(status="200").inc()
    after = samples(scrape(client)[1])
    assert after[("ews_calendar_refreshes_total", (("outcome", "error"),))] == before + 1
    assert after[("ews_calendar_feed_requests_total", (("status", "200"),))] >= 1


def test_outside_the_allowed_networks_only_staff_may_scrape(
    client: Client, calendars: None, staff_user: User, outsider: User
) -> None:
    assert scrape(client, REMOTE_ADDR=OUTSIDE)[0] == 403
    client.login(username="outsider", password=TEST_PASSWORD)
    assert scrape(client, REMOTE_ADDR=OUTSIDE)[0] == 403
    client.login(username="staff", password=TEST_PASSWORD)
    assert scrape(client, REMOTE_ADDR=OUTSIDE)[0] == 200


def test_allowed_networks_follow_the_setting(
    client: Client, calendars: None, settings: pytest.FixtureRequest
) -> None:
    settings.ICAL_ALLOWED_NETWORKS = ["203.0.113.0/24"]  # type: ignore[attr-defined]
    assert scrape(client, REMOTE_ADDR=OUTSIDE)[0] == 200
    assert scrape(client)[0] == 403  # 127.0.0.1 is no longer listed


def test_multiprocess_mode_merges_the_counters_of_every_process(
    client: Client, calendars: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    program = (
        "from connector.core.metrics import REFRESHES, TOKEN_REQUESTS\n"
        "REFRESHES.labels(outcome='ok').inc(2)\n"
        "TOKEN_REQUESTS.labels(app_registration='contoso').inc()\n"
    )
    for _ in range(2):  # two worker processes
        subprocess.run(
            [sys.executable, "-c", program],
            env=environment,
            check=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    found = samples(scrape(client)[1])
    assert found[("ews_calendar_refreshes_total", (("outcome", "ok"),))] == 4
    assert found[("ews_calendar_token_requests_total", (("app_registration", "contoso"),))] == 2
    assert found[("ews_calendar_snapshot_age_seconds", (("calendar", "hall"),))] == 90
