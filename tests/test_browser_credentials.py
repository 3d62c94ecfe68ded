"""Browser test of the app registration page's helpers: tenant lookup and Verify.

Chromium through Playwright against the live server, the fake identity platform
and the fake Graph (all on loopback).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.contrib.auth.models import User

from accounts.models import AppRegistration
from connector.models import Calendar, Resource, Server
from tests.fakes.graph import FakeGraph
from tests.fakes.identity import FakeIdentityPlatform
from tests.fixtures.browser import log_in
from tests.fixtures.identity import GRAPH_CLIENT_ID, GRAPH_SECRET, TENANT
from tests.fixtures.users import TEST_PASSWORD

pytestmark = pytest.mark.browser


def test_tenant_lookup_fills_the_guid_and_verify_shows_the_missing_permission(
    page: Any,
    screenshot: Any,
    admin_user: User,
    fake_identity: FakeIdentityPlatform,
    fake_graph: FakeGraph,
) -> None:
    fake_identity.add_domain(TENANT, "contoso.com")
    fake_identity.set_roles(GRAPH_CLIENT_ID, [])
    fake_graph.revoke(GRAPH_CLIENT_ID)
    tenant_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, TENANT))
    log_in(page, "admin", TEST_PASSWORD)

    page.goto("/admin/accounts/appregistration/add/")
    page.fill("#id_name", "contoso-signage")
    page.fill("#id_authority", fake_identity.url)
    page.fill("#id_tenant", "fabrikam.example")
    page.click("#tenant-lookup")
    page.wait_for_selector("#tenant-lookup-result.status-failed")
    assert "AADSTS90002" in page.text_content("#tenant-lookup-result")
    assert page.input_value("#id_tenant") == "fabrikam.example"  # left as typed

    page.fill("#id_tenant", "contoso.com")
    page.click("#tenant-lookup")
    page.wait_for_selector("#tenant-lookup-result.status-ok")
    assert page.input_value("#id_tenant") == tenant_id
    assert f"contoso.com belongs to tenant {tenant_id}" in page.text_content(
        "#tenant-lookup-result"
    )

    page.fill("#id_client_id", GRAPH_CLIENT_ID)
    page.fill("#id_client_secret", GRAPH_SECRET)
    page.click("input[name=_continue]")
    page.wait_for_selector(".messagelist .success")
    app = AppRegistration.objects.get(name="contoso-signage")
    assert app.tenant == tenant_id

    server = Server.objects.create(
        server_id="graph", type=Server.Type.GRAPH, base_uri=fake_graph.url, app_registration=app
    )
    calendar = Calendar.objects.create(calendar_id="lobby", server=server)
    Resource.objects.create(calendar=calendar, address="room-a@contoso.com", position=0)

    page.reload()
    consent = page.get_attribute("#consent-url", "href")
    assert consent == f"{fake_identity.url}/{tenant_id}/adminconsent?client_id={GRAPH_CLIENT_ID}"
    page.click("#verify-link")
    page.click("input[value='Verify now']")
    page.wait_for_selector("#verify-report")
    assert page.get_attribute("#verify-report", "data-ok") == "no"
    missing = page.locator(".ews-verify-missing", has_text="Calendars.Read")
    assert missing.first.is_visible()
    assert "Grant admin consent" in missing.first.text_content()
    screenshot(page, "verify", full_page=True)

    # The administrator grants it; Verify now passes.
    fake_identity.set_roles(GRAPH_CLIENT_ID, ["Calendars.Read"])
    fake_graph.grant(GRAPH_CLIENT_ID)
    page.click("input[value='Verify now']")
    page.wait_for_selector("#verify-report[data-ok=yes]")
    assert page.locator(".ews-verify-ok", has_text="Read room-a@contoso.com").count() == 1
