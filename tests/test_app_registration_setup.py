"""The app registration page's helpers: tenant from a domain, admin consent, RBAC PowerShell,
the Verify page, secret rotation and the credentials list's health.

Against the fake identity platform and the fake Graph (tests/fakes/), through the
admin with Django's test client.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import time
import uuid
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.utils import timezone

from accounts.models import AppRegistration
from accounts.tokens import acquire_token
from accounts.tokens.tenant import lookup_tenant
from connector.core.errors import SourceError
from connector.models import Calendar, Resource, Server
from connector.services.refresh import refresh_calendars
from tests.fakes.graph import FakeGraph
from tests.fakes.identity import FakeIdentityPlatform
from tests.fixtures.identity import GRAPH_CLIENT_ID, GRAPH_SECRET, TENANT
from tests.fixtures.users import TEST_PASSWORD

TENANT_ID = str(uuid.uuid5(uuid.NAMESPACE_DNS, TENANT))  # the fake's GUID for contoso
NEW_SECRET = "fake-secret-graph-2"
WRONG_SECRET = "fake-secret-graph-typo"


@pytest.fixture
def lobby(graph_server: Server) -> Calendar:
    calendar = Calendar.objects.create(calendar_id="lobby", server=graph_server)
    Resource.objects.create(calendar=calendar, address="room-a@contoso.com", position=0)
    return calendar


def change_url(app: AppRegistration) -> str:
    return f"/admin/accounts/appregistration/{app.pk}/change/"


def app_form(app: AppRegistration, **fields: Any) -> dict[str, Any]:
    data = {
        "name": app.name,
        "flow": app.flow,
        "tenant": app.tenant,
        "client_id": app.client_id,
        "client_secret": "",
        "secret_expires": app.secret_expires.isoformat() if app.secret_expires else "",
        "authority": app.authority,
        "account": app.account,
        "service_principal_id": app.service_principal_id,
        "new_client_secret": "",
        "new_secret_expires": "",
    }
    data.update(fields)
    return data


# -- tenant from a domain -------------------------------------------------------------------
def test_tenant_lookup_finds_the_guid_of_a_domain_at_the_fake_identity_platform(
    fake_identity: FakeIdentityPlatform, admin_client: Client
) -> None:
    fake_identity.add_domain(TENANT, "contoso.com")

    assert lookup_tenant(fake_identity.url, "contoso.onmicrosoft.com").tenant_id == TENANT_ID
    assert lookup_tenant(fake_identity.url, "Contoso.com ").tenant_id == TENANT_ID
    asked = [r.path for r in fake_identity.requests]
    assert "/contoso.com/v2.0/.well-known/openid-configuration" in asked

    answer = admin_client.get(
        "/admin/accounts/appregistration/tenant-lookup/",
        {"domain": "contoso.com", "authority": fake_identity.url},
    ).json()
    assert answer == {
        "tenant_id": TENANT_ID,
        "message": f"contoso.com belongs to tenant {TENANT_ID}.",
    }


def test_an_unknown_domain_gets_a_clear_message(
    fake_identity: FakeIdentityPlatform, admin_client: Client
) -> None:
    with pytest.raises(SourceError) as raised:
        lookup_tenant(fake_identity.url, "fabrikam.example")
    assert raised.value.code == "AADSTS90002"
    assert "No tenant is known for fabrikam.example" in raised.value.message

    answer = admin_client.get(
        "/admin/accounts/appregistration/tenant-lookup/",
        {"domain": "not a domain", "authority": fake_identity.url},
    ).json()
    assert "is not a domain name" in answer["error"]


def test_tenant_lookup_is_for_those_who_may_edit_app_registrations(
    fake_identity: FakeIdentityPlatform, staff_user: User, client: Client
) -> None:
    client.login(username="staff", password=TEST_PASSWORD)
    answer = client.get(
        "/admin/accounts/appregistration/tenant-lookup/",
        {"domain": "contoso.onmicrosoft.com", "authority": fake_identity.url},
    )
    assert answer.status_code in (302, 403)
    assert TENANT_ID.encode() not in answer.content


# -- admin consent and RBAC for Applications ------------------------------------------------
def test_the_page_gives_the_consent_url_the_permissions_and_the_rbac_powershell(
    admin_client: Client, app_registration: AppRegistration, graph_server: Server
) -> None:
    app_registration.service_principal_id = "abcdef01-2345-6789-abcd-ef0123456789"
    app_registration.save()

    page = html.unescape(admin_client.get(change_url(app_registration)).content.decode())

    consent = f"{app_registration.authority}/{TENANT}/adminconsent?client_id={GRAPH_CLIENT_ID}"
    assert f'href="{consent}"' in page
    assert "Calendars.Read — application permission of Microsoft Graph, with admin consent" in (
        page
    )
    assert "full_access_as_app" not in page.split('id="rbac-powershell"')[1].split("</pre>")[0]
    assert (
        f"New-ServicePrincipal -AppId {GRAPH_CLIENT_ID} "
        "-ObjectId abcdef01-2345-6789-abcd-ef0123456789 -DisplayName" in page
    )
    assert (
        'New-ManagementScope -Name "Room mailboxes" -RecipientRestrictionFilter '
        '{RecipientTypeDetails -eq "RoomMailbox"}' in page
    )
    assert (
        "New-ManagementRoleAssignment -App abcdef01-2345-6789-abcd-ef0123456789 "
        '-Role "Application Calendars.Read" -CustomResourceScope "Room mailboxes"' in page
    )
    assert "remove the tenant-wide grant" in page
    assert "Application access policies" in page and "legacy" in page
    assert GRAPH_SECRET not in page


def test_an_ews_app_gets_full_access_as_app_and_the_ews_role(
    admin_client: Client, ews_oauth_server: Server, app_registration: AppRegistration
) -> None:
    page = html.unescape(admin_client.get(change_url(app_registration)).content.decode())

    assert "full_access_as_app — application permission of Office 365 Exchange Online" in page
    assert '-Role "Application EWS.AccessAsApp"' in page
    assert "Application Calendars.Read" not in page


# -- the Verify page ------------------------------------------------------------------------
def test_verify_page_reports_a_missing_calendars_read(
    admin_client: Client,
    app_registration: AppRegistration,
    lobby: Calendar,
    fake_identity: FakeIdentityPlatform,
    fake_graph: FakeGraph,
) -> None:
    fake_identity.set_roles(GRAPH_CLIENT_ID, [])
    fake_graph.revoke(GRAPH_CLIENT_ID)
    url = f"/credentials/app-registrations/{app_registration.pk}/verify/"

    assert f'href="{url}"' in admin_client.get(change_url(app_registration)).content.decode()
    page = admin_client.post(url, {"ordinary_mailbox": ""}).content.decode()

    assert 'data-ok="no"' in page
    assert "✗ Calendars.Read (application permission of Microsoft Graph) is missing." in page
    assert "Grant admin consent" in page
    assert "decoded without verifying its signature" in page
    assert GRAPH_SECRET not in page

    fake_identity.set_roles(GRAPH_CLIENT_ID, ["Calendars.Read"])
    fake_graph.grant(GRAPH_CLIENT_ID)
    page = admin_client.post(url, {"ordinary_mailbox": ""}).content.decode()
    assert 'data-ok="yes"' in page
    assert "✓ Calendars.Read (application permission of Microsoft Graph) is in the token." in page


def test_verify_page_is_refused_to_signage_staff(
    app_registration: AppRegistration, staff_user: User, client: Client
) -> None:
    client.login(username="staff", password=TEST_PASSWORD)
    answer = client.post(f"/credentials/app-registrations/{app_registration.pk}/verify/")
    assert answer.status_code == 403


# -- secret rotation ------------------------------------------------------------------------
def test_a_wrong_new_secret_keeps_the_old_one_working_and_says_why(
    admin_client: Client,
    app_registration: AppRegistration,
    lobby: Calendar,
    fake_identity: FakeIdentityPlatform,
    fake_graph: FakeGraph,
) -> None:
    new_expiry = timezone.localdate() + dt.timedelta(days=700)
    old_expiry = app_registration.secret_expires
    fake_identity.add_secret(GRAPH_CLIENT_ID, NEW_SECRET)  # created in Entra ID
    scope = f"{fake_graph.url}/.default"
    acquire_token(app_registration, scope)  # a token of the old secret, in the cache

    answer = admin_client.post(
        change_url(app_registration),
        app_form(
            app_registration,
            new_client_secret=WRONG_SECRET,  # a typo
            new_secret_expires=new_expiry.isoformat(),
        ),
    )
    assert answer.status_code == 302
    app_registration.refresh_from_db()
    assert app_registration.pending_secret == WRONG_SECRET
    assert app_registration.client_secret == GRAPH_SECRET
    with connection.cursor() as cursor:  # stored encrypted, as the current secret
        cursor.execute("SELECT pending_secret FROM accounts_appregistration")
        (stored,) = cursor.fetchone()
    assert WRONG_SECRET not in stored

    # The cached token's lifetime ends: the next token request tries the new secret first.
    with time_machine.travel(time.time() + 2 * 3600, tick=True):
        outcomes = refresh_calendars([lobby])
    assert [outcome.ok for outcome in outcomes] == [True]  # the screens keep working
    app_registration.refresh_from_db()
    assert app_registration.client_secret == GRAPH_SECRET
    assert app_registration.secret_expires == old_expiry
    assert "AADSTS7000215" in app_registration.pending_secret_error
    assert "VALUE, not its secret ID" in app_registration.pending_secret_error

    page = admin_client.get(change_url(app_registration)).content.decode()
    assert "The new secret was refused; the current secret stays in use." in page
    assert "AADSTS7000215" in page
    assert WRONG_SECRET not in page and GRAPH_SECRET not in page

    # The right value this time; Verify tries it at once and it replaces the old one.
    admin_client.post(
        change_url(app_registration),
        app_form(
            app_registration,
            new_client_secret=NEW_SECRET,
            new_secret_expires=new_expiry.isoformat(),
        ),
    )
    page = admin_client.post(
        f"/credentials/app-registrations/{app_registration.pk}/verify/", {}
    ).content.decode()
    assert 'data-ok="yes"' in page, re.findall(r'class="ews-verify-[a-z]+">([^<]*)', page)
    app_registration.refresh_from_db()
    assert app_registration.client_secret == NEW_SECRET
    assert app_registration.secret_expires == new_expiry
    assert app_registration.pending_secret == ""
    assert app_registration.pending_secret_error == ""


def test_a_right_new_secret_replaces_the_old_one_at_the_next_token_request(
    app_registration: AppRegistration, fake_identity: FakeIdentityPlatform, fake_graph: FakeGraph
) -> None:
    fake_identity.add_secret(GRAPH_CLIENT_ID, NEW_SECRET)
    app_registration.pending_secret = NEW_SECRET
    app_registration.save()

    acquire_token(app_registration, f"{fake_graph.url}/.default")

    app_registration.refresh_from_db()
    assert app_registration.client_secret == NEW_SECRET
    assert app_registration.pending_secret == ""
    # The old secret can now be deleted in Entra ID: tokens keep coming.
    fake_identity.set_secret(GRAPH_CLIENT_ID, NEW_SECRET)
    fake_identity.revoke_tokens()
    with time_machine.travel(time.time() + 2 * 3600, tick=True):
        assert acquire_token(app_registration, f"{fake_graph.url}/.default").token


def test_a_new_secret_must_differ_from_the_current_one(
    admin_client: Client, app_registration: AppRegistration
) -> None:
    page = admin_client.post(
        change_url(app_registration), app_form(app_registration, new_client_secret=GRAPH_SECRET)
    ).content.decode()
    assert "This is the current secret." in page
    app_registration.refresh_from_db()
    assert app_registration.pending_secret == ""


# -- per-account health ---------------------------------------------------------------------
def test_the_list_shows_last_token_last_error_and_calendars_with_a_filter(
    admin_client: Client,
    app_registration: AppRegistration,
    lobby: Calendar,
    fake_identity: FakeIdentityPlatform,
    fake_graph: FakeGraph,
) -> None:
    broken = AppRegistration.objects.create(
        name="fabrikam",
        tenant=TENANT,
        client_id="99999999-0000-0000-0000-000000000000",
        client_secret="fake-secret-fabrikam",
        authority=fake_identity.url,
    )
    acquire_token(app_registration, f"{fake_graph.url}/.default")
    with pytest.raises(SourceError):
        acquire_token(broken, f"{fake_graph.url}/.default")

    page = admin_client.get("/admin/accounts/appregistration/").content.decode()
    row = page.split(">contoso-signage</a>")[1].split("</tr>")[0]
    assert f"{timezone.localtime():%Y-%m-%d}" in row  # last token: today
    assert '<span class="status status-ok">none</span>' in row
    assert ">lobby</a>" in row
    broken_row = page.split(">fabrikam</a>")[1].split("</tr>")[0]
    assert "AADSTS700016" in broken_row
    assert "Check the application (client) id" in broken_row  # the hint
    assert "never" in broken_row

    with_errors = admin_client.get("/admin/accounts/appregistration/?health=errors")
    assert list(with_errors.context["cl"].result_list) == [broken]
    without = admin_client.get("/admin/accounts/appregistration/?health=ok")
    assert list(without.context["cl"].result_list) == [app_registration]

    # A token obtained again clears the error.
    broken.client_id, broken.client_secret = GRAPH_CLIENT_ID, GRAPH_SECRET
    broken.save()
    acquire_token(broken, f"{fake_graph.url}/.default")
    broken.refresh_from_db()
    assert broken.last_error == "" and broken.last_token_at is not None


def test_a_token_from_the_cache_writes_nothing(
    app_registration: AppRegistration, fake_graph: FakeGraph, django_assert_num_queries: Any
) -> None:
    scope = f"{fake_graph.url}/.default"
    acquire_token(app_registration, scope)
    with django_assert_num_queries(0):
        assert acquire_token(app_registration, scope).from_cache


def test_a_view_only_page_shows_no_secret(
    app_registration: AppRegistration, client: Client, db: None
) -> None:
    viewer = User.objects.create_user("viewer", password=TEST_PASSWORD, is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_appregistration"))
    client.login(username="viewer", password=TEST_PASSWORD)
    answer = client.get(change_url(app_registration))
    assert answer.status_code == 200
    page = answer.content.decode()
    assert GRAPH_SECRET not in page
    assert "new client secret" not in page  # nothing to enter on a view-only page
    assert "Look up the tenant id" not in page
