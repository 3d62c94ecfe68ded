"""/status/: every calendar, the worker and the credentials; what is broken comes first."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import Client

from accounts.models import AppRegistration, ServiceAccount
from connector.models import Calendar, RefreshStatus, Server, Snapshot, WorkerHeartbeat
from connector.services.status import calendar_rows
from tests.fixtures.users import TEST_PASSWORD

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def setup(db: None) -> None:
    app = AppRegistration.objects.create(
        name="contoso-signage",
        tenant="contoso.onmicrosoft.com",
        client_id="11111111-2222-3333-4444-555555555555",
        client_secret="fake-secret-status",
        secret_expires=dt.date(2026, 11, 30),
    )
    account = ServiceAccount.objects.create(
        name="delegate-hq", username="CONTOSO\\delegate", password="fake-password-status"
    )
    onprem = Server.objects.create(
        server_id="onprem", type="ews", base_uri="https://mail.contoso.com", service_account=account
    )
    online = Server.objects.create(
        server_id="o365", type="ews", base_uri="https://outlook.office365.com", app_registration=app
    )

    def snapshot(calendar: Calendar, age: dt.timedelta, events: int = 4) -> None:
        Snapshot.objects.create(
            calendar=calendar,
            ics="",
            etag="e",
            generated=NOW - age,
            changed=NOW - age,
            event_count=events,
        )

    ok = Calendar.objects.create(calendar_id="a-ok", server=onprem, cache_persistence=300)
    snapshot(ok, dt.timedelta(minutes=2))
    RefreshStatus.objects.create(
        calendar=ok,
        last_attempt=NOW - dt.timedelta(minutes=2),
        last_success=NOW - dt.timedelta(minutes=2),
        last_duration=0.42,
        next_refresh=NOW + dt.timedelta(minutes=3),
    )
    stale = Calendar.objects.create(calendar_id="b-stale", server=onprem, cache_persistence=300)
    snapshot(stale, dt.timedelta(hours=2))
    failing = Calendar.objects.create(calendar_id="c-failing", server=onprem)
    snapshot(failing, dt.timedelta(minutes=30))
    RefreshStatus.objects.create(
        calendar=failing,
        last_attempt=NOW - dt.timedelta(minutes=1),
        last_success=NOW - dt.timedelta(minutes=30),
        last_error="Access to room-x was denied.",
        last_error_hint="Give the service account delegate rights on room-x.",
        last_error_code="ErrorAccessDenied",
        last_error_at=NOW - dt.timedelta(minutes=1),
        consecutive_failures=3,
    )
    expiring = Calendar.objects.create(calendar_id="d-expiring", server=online)
    snapshot(expiring, dt.timedelta(minutes=1))
    Calendar.objects.create(calendar_id="e-new", server=onprem)
    WorkerHeartbeat.objects.create(name="host:1", seen=NOW - dt.timedelta(seconds=20), pid=99)


def test_broken_calendars_come_first(setup: None) -> None:
    rows = calendar_rows(NOW)
    assert [(row.calendar_id, row.status) for row in rows] == [
        ("c-failing", "failing"),
        ("b-stale", "stale"),
        ("d-expiring", "expiring"),
        ("e-new", "new"),
        ("a-ok", "ok"),
    ]


def test_a_later_success_clears_failing(setup: None) -> None:
    status = RefreshStatus.objects.get(calendar__calendar_id="c-failing")
    status.consecutive_failures = 0
    status.last_success = NOW
    status.save()
    Snapshot.objects.filter(calendar__calendar_id="c-failing").update(generated=NOW)
    row = next(row for row in calendar_rows(NOW) if row.calendar_id == "c-failing")
    assert row.status == "ok" and row.last_error == ""


def get_page(client: Client, url: str = "/status/") -> str:
    with time_machine.travel(NOW, tick=False):
        response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def test_status_page_for_staff(client: Client, setup: None, staff_user: User) -> None:
    client.login(username="staff", password=TEST_PASSWORD)
    html = get_page(client)
    order = [match for match in re.findall(r'data-calendar="([^"]+)"', html)]
    assert order == ["c-failing", "b-stale", "d-expiring", "e-new", "a-ok"]
    # Status is a word with a class, never colour alone.
    assert '<span class="status status-failing">failing</span>' in html
    assert '<span class="status status-stale">stale</span>' in html
    # Last error and hint, snapshot age against the period, event count, next refresh.
    assert "Access to room-x was denied." in html
    assert "Give the service account delegate rights on room-x." in html
    assert "2 h / 5 min" in html
    assert "3 failures in a row" in html
    assert "12:03:00" in html
    # The worker heartbeat.
    assert "host:1" in html and "last seen 20 s ago" in html
    # Credentials by name with their expiry; no secrets, usernames or tenants.
    assert "contoso-signage" in html and "2026-11-30 (10 days)" in html
    assert "delegate-hq" in html
    for secret in (
        "fake-secret",
        "fake-password",
        "CONTOSO\\delegate",
        "contoso.onmicrosoft.com",
        "11111111-2222",
    ):
        assert secret not in html
    # EWS in Exchange Online is flagged with its dates; only administrators get the switch.
    assert "EWS retiring" in html and "1 April 2027" in html and "1 October 2026" in html
    assert "Switch to Graph" not in html


def test_status_page_updates_itself_from_a_fragment(
    client: Client, setup: None, admin_user: User
) -> None:
    client.login(username="admin", password=TEST_PASSWORD)
    html = get_page(client)
    assert 'data-url="/status/fragment/"' in html and "connector/status.js" in html
    assert "Switch to Graph" in html
    with time_machine.travel(NOW, tick=False):
        fragment = client.get("/status/fragment/")
    assert fragment["Cache-Control"] == "no-store"
    text = fragment.content.decode()
    assert "<html" not in text and 'data-calendar="c-failing"' in text


def test_missing_worker_is_shown(client: Client, setup: None, admin_user: User) -> None:
    WorkerHeartbeat.objects.all().delete()
    client.login(username="admin", password=TEST_PASSWORD)
    html = get_page(client)
    assert '<span class="status status-failing">failing</span> No background worker' in html


def test_anonymous_and_outsiders_cannot_see_the_status(
    client: Client, setup: None, outsider: User
) -> None:
    for url in ("/status/", "/status/fragment/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
    client.login(username="outsider", password=TEST_PASSWORD)
    assert client.get("/status/").status_code == 403
    assert client.get("/status/fragment/").status_code == 403
