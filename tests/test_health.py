"""/healthz: JSON for monitoring, 200 or 503, without login and without secrets."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine
from django.db import OperationalError, connection
from django.test import Client
from pytest_django.fixtures import Settings

from accounts.models import AppRegistration
from connector.models import Calendar, RefreshStatus, Server, Snapshot, WorkerHeartbeat

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def setup(db: None) -> Calendar:
    app = AppRegistration.objects.create(
        name="contoso",
        tenant="contoso.onmicrosoft.com",
        client_id="11111111-2222-3333-4444-555555555555",
        client_secret="fake-secret-health",
        secret_expires=dt.date(2026, 11, 27),
    )
    server = Server.objects.create(
        server_id="o365", type="graph", base_uri="https://graph.microsoft.com", app_registration=app
    )
    calendar = Calendar.objects.create(calendar_id="hall", server=server)
    Snapshot.objects.create(
        calendar=calendar,
        ics="BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
        etag="x",
        generated=NOW - dt.timedelta(minutes=2),
        changed=NOW,
        event_count=3,
    )
    return calendar


def get(client: Client) -> tuple[int, dict[str, Any]]:
    with time_machine.travel(NOW, tick=False):
        response = client.get("/healthz")
    assert response["Content-Type"] == "application/json"
    return response.status_code, response.json()


def test_healthy_with_a_fresh_worker_heartbeat(client: Client, setup: Calendar) -> None:
    WorkerHeartbeat.objects.create(name="worker-1", seen=NOW - dt.timedelta(seconds=30), pid=42)
    status, body = get(client)
    assert status == 200
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["worker"]["heartbeat_age_seconds"] == 30.0
    assert body["failing_calendars"] == 0
    assert body["expiring_secrets"] == 1
    assert body["expired_secrets"] == 0


def test_only_clusters_with_a_recent_heartbeat_are_counted(client: Client, setup: Calendar) -> None:
    # One cluster runs; three earlier starts of it left their heartbeats behind.
    WorkerHeartbeat.objects.create(name="host:400", seen=NOW - dt.timedelta(seconds=40), pid=401)
    for pid, minutes in ((100, 6), (200, 30), (300, 59)):
        WorkerHeartbeat.objects.create(
            name=f"host:{pid}", seen=NOW - dt.timedelta(minutes=minutes), pid=pid + 1
        )

    status, body = get(client)

    assert status == 200
    assert body["worker"]["workers"] == 1
    assert body["worker"]["heartbeat_age_seconds"] == 40.0


def test_no_worker_heartbeat_is_503(client: Client, setup: Calendar) -> None:
    status, body = get(client)
    assert status == 503
    assert body["worker"]["status"] == "failing"
    assert body["problems"] == ["no worker heartbeat"]


def test_old_worker_heartbeat_is_503(client: Client, setup: Calendar) -> None:
    WorkerHeartbeat.objects.create(name="worker-1", seen=NOW - dt.timedelta(minutes=6))
    status, body = get(client)
    assert status == 503
    assert body["worker"]["heartbeat_age_seconds"] == 360.0
    assert body["problems"] == ["worker heartbeat 360 s old"]


def test_failing_calendars_are_counted_but_keep_200(client: Client, setup: Calendar) -> None:
    WorkerHeartbeat.objects.create(name="worker-1", seen=NOW)
    RefreshStatus.objects.create(
        calendar=setup,
        last_attempt=NOW,
        last_error="Access denied",
        last_error_at=NOW,
        consecutive_failures=2,
    )
    status, body = get(client)
    assert status == 200
    assert body["failing_calendars"] == 1


def test_unreachable_database_is_503(client: Client, setup: Calendar) -> None:
    def refuse(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        raise OperationalError("could not connect to server")

    with connection.execute_wrapper(refuse):
        status, body = get(client)
    assert status == 503
    assert body == {
        "status": "fail",
        "database": "unreachable",
        "problems": ["database unreachable"],
    }


def test_health_never_shows_secrets_and_needs_no_login(client: Client, setup: Calendar) -> None:
    WorkerHeartbeat.objects.create(name="worker-1", seen=NOW)
    with time_machine.travel(NOW, tick=False):
        response = client.get("/healthz")
    text = response.content.decode()
    assert response.status_code == 200
    assert "fake-secret" not in text and "contoso" not in text
    assert response["Cache-Control"].startswith("max-age=0")


def test_health_answers_plain_http_when_https_redirects_the_rest(
    client: Client, setup: Calendar, settings: Settings
) -> None:
    # HTTPS=true turns SECURE_SSL_REDIRECT on; a load balancer checks the instance over HTTP.
    settings.SECURE_SSL_REDIRECT = True
    WorkerHeartbeat.objects.create(name="worker-1", seen=NOW)

    status, _body = get(client)

    assert status == 200
    assert client.get("/admin/login/").status_code == 301
