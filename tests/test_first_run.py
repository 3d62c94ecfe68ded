"""A first run that leads the way: "/" goes to the admin, whose home lists the steps."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from accounts.models import ServiceAccount
from connector.models import Calendar, Milestone, Server
from connector.services import first_run

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_process() -> Iterator[None]:
    first_run.forget_noted()
    yield
    first_run.forget_noted()


def steps(client: Client) -> list[tuple[str, str]]:
    text = client.get("/admin/").content.decode()
    return re.findall(r'data-step="(\d)" data-state="(\w+)"', text)


def test_root_redirects_to_the_admin(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/"


def test_empty_site_shows_the_four_steps_credential_first(admin_client: Client) -> None:
    assert steps(admin_client) == [("1", "next"), ("2", "later"), ("3", "later"), ("4", "later")]
    text = admin_client.get("/admin/").content.decode()
    assert 'href="/admin/accounts/serviceaccount/add/" class="ews-next-link"' in text
    order = [
        text.index(f"<strong>{name}</strong>") for name in ("Credential", "Server", "Calendar")
    ]
    assert order == sorted(order)


def test_steps_are_marked_done_in_order(admin_client: Client) -> None:
    account = ServiceAccount.objects.create(
        name="d", username="d@example.com", password="fake-secret"
    )
    assert steps(admin_client)[:2] == [("1", "done"), ("2", "next")]
    server = Server.objects.create(
        server_id="ex", base_uri="https://mail.example.com", service_account=account
    )
    assert steps(admin_client)[1:3] == [("2", "done"), ("3", "next")]
    calendar = Calendar.objects.create(calendar_id="lobby", server=server)
    assert steps(admin_client) == [("1", "done"), ("2", "done"), ("3", "done"), ("4", "next")]
    text = admin_client.get("/admin/").content.decode()
    assert f'href="/admin/connector/calendar/{calendar.pk}/change/#feed-url"' in text


def test_an_icalendar_server_needs_no_credential(admin_client: Client) -> None:
    Server.objects.create(server_id="files", type="ics", base_uri="https://127.0.0.1:9/x/")
    assert steps(admin_client)[:3] == [("1", "done"), ("2", "done"), ("3", "next")]


def test_guide_ends_once_a_player_got_a_feed(
    admin_client: Client, make_calendar: Any, settings: Any
) -> None:
    from django.utils import timezone

    from connector.models import Snapshot

    calendar = make_calendar("lobby", cache_persistence=3600)
    now = timezone.now()
    Snapshot.objects.create(
        calendar=calendar,
        ics="BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
        etag='"x"',
        generated=now,
        changed=now,
    )
    settings.ICAL_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    assert steps(admin_client)
    assert Client().get("/ical/missing.ics").status_code == 404
    assert not Milestone.objects.exists()  # a 404 is no feed
    assert Client().get("/ical/lobby.ics").status_code == 200
    assert Milestone.objects.get().detail == "lobby"
    assert steps(admin_client) == []
    assert 'id="first-run"' not in admin_client.get("/admin/").content.decode()


def test_guide_is_not_shown_to_the_signed_out(client: Client) -> None:
    assert 'id="first-run"' not in client.get("/admin/login/").content.decode()
