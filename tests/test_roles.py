"""Roles: administrators edit everything; signage staff operate but never see credentials."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.test import Client

from accounts.models import AppRegistration, ServiceAccount
from connector.models import Calendar, Resource, Server, Snapshot
from connector.roles import SIGNAGE_STAFF, can_operate
from tests.fakes.ews import FakeExchange
from tests.fixtures.users import TEST_PASSWORD


@pytest.fixture
def objects(db: None) -> dict[str, int]:
    app = AppRegistration.objects.create(
        name="contoso", tenant="t", client_id="c", client_secret="fake-secret-roles"
    )
    account = ServiceAccount.objects.create(
        name="delegate", username="delegate@contoso.com", password="fake-password-roles"
    )
    server = Server.objects.create(
        server_id="onprem", type="ews", base_uri="https://127.0.0.1:9", service_account=account
    )
    calendar = Calendar.objects.create(calendar_id="hall", server=server)
    return {"app": app.pk, "account": account.pk, "server": server.pk, "calendar": calendar.pk}


def login(client: Client, username: str) -> Client:
    assert client.login(username=username, password=TEST_PASSWORD)
    return client


@pytest.mark.django_db
def test_migrate_creates_the_staff_group_without_credential_permissions() -> None:
    group = Group.objects.get(name=SIGNAGE_STAFF)
    codenames = set(group.permissions.values_list("content_type__app_label", "codename"))
    assert ("connector", "refresh_calendar") in codenames
    assert ("connector", "view_calendar") in codenames
    assert not any(app == "accounts" for app, _ in codenames)
    assert not any(code.startswith(("add_", "change_", "delete_")) for _, code in codenames)


def test_staff_get_403_on_every_credential_page(
    client: Client, objects: dict[str, int], staff_user: User
) -> None:
    login(client, "staff")
    urls = [
        "/admin/accounts/appregistration/",
        "/admin/accounts/appregistration/add/",
        f"/admin/accounts/appregistration/{objects['app']}/change/",
        f"/admin/accounts/appregistration/{objects['app']}/delete/",
        "/admin/accounts/serviceaccount/",
        "/admin/accounts/serviceaccount/add/",
        f"/admin/accounts/serviceaccount/{objects['account']}/change/",
    ]
    for url in urls:
        assert client.get(url).status_code == 403, url
    index = client.get("/admin/").content.decode()
    assert "/admin/accounts/" not in index


def test_administrators_see_credential_pages(
    client: Client, objects: dict[str, int], admin_user: User
) -> None:
    login(client, "admin")
    assert client.get("/admin/accounts/appregistration/").status_code == 200
    assert (
        client.get(f"/admin/accounts/serviceaccount/{objects['account']}/change/").status_code
        == 200
    )


def test_staff_view_calendars_but_cannot_change_them(
    client: Client, objects: dict[str, int], staff_user: User
) -> None:
    login(client, "staff")
    assert client.get("/admin/connector/calendar/").status_code == 200
    assert client.get("/admin/connector/calendar/add/").status_code == 403
    change = client.post(
        f"/admin/connector/calendar/{objects['calendar']}/change/", {"calendar_id": "renamed"}
    )
    assert change.status_code == 403
    assert Calendar.objects.filter(calendar_id="hall").exists()


def test_staff_viewing_a_calendar_do_not_see_its_own_password(
    client: Client, objects: dict[str, int], staff_user: User
) -> None:
    calendar = Calendar.objects.get(pk=objects["calendar"])
    calendar.username = "other@contoso.com"
    calendar.password = "fake-secret-calendar-own"
    calendar.save()
    login(client, "staff")

    page = client.get(f"/admin/connector/calendar/{calendar.pk}/change/")

    assert page.status_code == 200
    assert "other@contoso.com" in page.content.decode()
    assert "fake-secret-calendar-own" not in page.content.decode()


def test_a_view_only_permission_on_credentials_does_not_show_their_secrets(
    client: Client, objects: dict[str, int], staff_user: User
) -> None:
    staff_user.user_permissions.add(
        Permission.objects.get(codename="view_serviceaccount"),
        Permission.objects.get(codename="view_appregistration"),
    )
    login(client, "staff")

    account = client.get(f"/admin/accounts/serviceaccount/{objects['account']}/change/")
    app = client.get(f"/admin/accounts/appregistration/{objects['app']}/change/")

    assert account.status_code == app.status_code == 200
    assert "delegate@contoso.com" in account.content.decode()
    assert "fake-password-roles" not in account.content.decode()
    assert "fake-secret-roles" not in app.content.decode()


def test_staff_open_status_and_console(
    client: Client, objects: dict[str, int], staff_user: User
) -> None:
    login(client, "staff")
    assert client.get("/status/").status_code == 200
    # The console runs (and fails against a server that does not exist) but opens.
    assert client.get("/console/hall/?format=text").status_code == 200


def test_staff_cannot_switch_servers_to_graph(
    client: Client, objects: dict[str, int], staff_user: User
) -> None:
    login(client, "staff")
    assert client.get("/servers/onprem/switch-to-graph/").status_code == 403
    assert client.get("/servers/onprem/compare/").status_code == 403


def test_who_may_operate(objects: dict[str, int], staff_user: User, outsider: User) -> None:
    plain_staff = User.objects.create_user("plain", password=TEST_PASSWORD, is_staff=True)
    inactive = User.objects.create_superuser("gone", password=TEST_PASSWORD, is_active=False)
    assert can_operate(staff_user)
    assert not can_operate(outsider)
    assert not can_operate(plain_staff)
    assert not can_operate(inactive)


def test_anonymous_users_see_neither_page(client: Client, objects: dict[str, int]) -> None:
    for url in ("/status/", "/console/hall/", "/servers/onprem/switch-to-graph/"):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"], url


def test_staff_refresh_now_from_the_calendar_list(
    client: Client, staff_user: User, ews_server: Server, fake_ews: FakeExchange
) -> None:
    calendar = Calendar.objects.create(calendar_id="lobby", server=ews_server)
    Resource.objects.create(calendar=calendar, address="room-a@contoso.com")
    login(client, "staff")
    changelist = client.get("/admin/connector/calendar/").content.decode()
    assert 'value="refresh_now"' in changelist
    response = client.post(
        "/admin/connector/calendar/",
        {"action": "refresh_now", "_selected_action": [calendar.pk]},
        follow=True,
    )
    assert "lobby: ok" in response.content.decode().lower()
    assert Snapshot.objects.get(calendar=calendar).event_count > 0


def test_staff_without_the_refresh_permission_get_no_refresh_action(
    client: Client, objects: dict[str, int]
) -> None:
    viewer = User.objects.create_user("viewer", password=TEST_PASSWORD, is_staff=True)
    viewer.user_permissions.add(
        Permission.objects.get(content_type__app_label="connector", codename="view_calendar")
    )
    login(client, "viewer")
    changelist = client.get("/admin/connector/calendar/")
    assert changelist.status_code == 200
    assert 'value="refresh_now"' not in changelist.content.decode()
    assert client.get("/status/").status_code == 403


def test_calendar_page_links_to_the_console_and_server_page_to_the_switch(
    client: Client, objects: dict[str, int], staff_user: User, admin_user: User
) -> None:
    app = AppRegistration.objects.get()
    online = Server.objects.create(
        server_id="o365", type="ews", base_uri="https://outlook.office365.com", app_registration=app
    )
    login(client, "staff")
    page = client.get(f"/admin/connector/calendar/{objects['calendar']}/change/").content.decode()
    assert 'href="/console/hall/" class="ews-test-link"' in page
    assert (
        "ews-switch-link"
        not in client.get(f"/admin/connector/server/{online.pk}/change/").content.decode()
    )
    login(client, "admin")
    page = client.get(f"/admin/connector/server/{online.pk}/change/").content.decode()
    assert 'href="/servers/o365/switch-to-graph/" class="ews-switch-link"' in page
    onprem = client.get(f"/admin/connector/server/{objects['server']}/change/").content.decode()
    assert "ews-switch-link" not in onprem
