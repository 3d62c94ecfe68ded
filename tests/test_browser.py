"""Browser tests: Chromium through Playwright against the live server and the fake Exchange."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from accounts.models import AppRegistration, ServiceAccount
from connector.models import Calendar, RefreshStatus, Resource, Server, Snapshot, WorkerHeartbeat
from tests.fakes.ews import FakeExchange
from tests.fixtures.browser import log_in
from tests.fixtures.exchange import EWS_DELEGATE, EWS_PASSWORD
from tests.fixtures.users import TEST_PASSWORD

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}


def no_horizontal_scroll(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"))


def test_create_server_and_calendar_then_see_events_and_timeline_in_the_console(
    page: Any, screenshot: Any, admin_user: User, fake_ews: FakeExchange
) -> None:
    log_in(page, "admin", TEST_PASSWORD)

    page.goto("/admin/accounts/serviceaccount/add/")
    page.fill("#id_name", "delegate")
    page.fill("#id_username", EWS_DELEGATE)
    page.fill("#id_password", EWS_PASSWORD)
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")

    page.goto("/admin/connector/server/add/")
    page.fill("#id_server_id", "exchange")
    page.select_option("#id_type", "ews")
    page.fill("#id_label", "Head office Exchange")
    page.fill("#id_base_uri", fake_ews.url)
    page.select_option("#id_service_account", label=f"delegate ({EWS_DELEGATE})")
    page.select_option("#id_http_scheme", "ntlm")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")

    page.goto("/admin/connector/calendar/add/")
    page.fill("#id_calendar_id", "lobby")
    page.select_option("#id_server", label="Head office Exchange")
    page.fill("#id_timezone", "Europe/Paris")  # where the fake's rooms are
    page.fill("#id_resources-0-address", "room-a@contoso.com")
    if not page.locator("#id_resources-1-address").count():
        page.click("#resources-group .add-row a")
    page.fill("#id_resources-1-address", "room-b@contoso.com")
    page.click("input[name=_continue]")
    page.wait_for_selector(".messagelist .success")
    assert Calendar.objects.get(calendar_id="lobby").resources.count() == 2

    # The calendar's admin page links to its test console.
    page.click("a.ews-test-link")
    page.wait_for_selector("#console:not([data-outcome=running])")  # steps stream in
    assert page.get_attribute("#console", "data-outcome") == "ok"
    assert page.locator(".ews-step[data-step=fetch]").count() >= 2
    rooms = page.locator(".ews-room")
    assert rooms.count() == 2
    assert page.locator(".ews-room[data-resource='room-a@contoso.com'] .ews-event").count() > 3
    assert page.get_by_text("09:00 Weekly sync").first.is_visible()
    assert page.locator(".ews-now").count() == 2  # today's bar of each room
    assert page.locator("tr.ews-event-dropped").count() >= 1
    screenshot(page, "console", full_page=True)
    assert not Snapshot.objects.exists()  # a test saves nothing

    page.click("button:has-text('Refresh now')")
    page.wait_for_selector(".messagelist .success")
    assert Snapshot.objects.get(calendar__calendar_id="lobby").event_count > 0


def test_import_configuration_xml_through_the_upload_page(
    page: Any, admin_user: User, fake_ews: FakeExchange, tmp_path: Path
) -> None:
    xml = f"""<?xml version="1.0" encoding="UTF-8"?>
<fcc:configuration xmlns:fcc="urn:ews-calendar:configuration"
                   xmlns:scc="urn:ews-calendar:configuration">
  <fcc:servers>
    <scc:server id="hq" type="ews">
      <scc:baseuri>{fake_ews.url}</scc:baseuri>
      <scc:label>Imported Exchange</scc:label>
      <scc:authentication type="http-authentication">
        <scc:scheme>ntlm</scc:scheme>
        <scc:credentials>
          <scc:username>{EWS_DELEGATE}</scc:username>
          <scc:password>{EWS_PASSWORD}</scc:password>
        </scc:credentials>
      </scc:authentication>
    </scc:server>
  </fcc:servers>
  <fcc:calendars>
    <scc:calendar id="hall" server="url(#hq)">
      <param name="resource">big-hall@contoso.com</param>
      <param name="requestWindow">3</param>
    </scc:calendar>
  </fcc:calendars>
</fcc:configuration>
"""
    upload = tmp_path / "configuration.xml"
    upload.write_text(xml, encoding="utf-8")
    log_in(page, "admin", TEST_PASSWORD)
    page.goto("/admin/connector/calendar/")
    page.click("text=Import configuration.xml")
    page.set_input_files("input[type=file]", str(upload))
    page.click("#xmlconfig-upload [type=submit]")
    page.wait_for_selector("input[name=confirm]")
    assert "hall" in page.content()
    page.click("input[name=confirm]")
    page.wait_for_selector(".messagelist")
    calendar = Calendar.objects.get(calendar_id="hall")
    assert calendar.server.server_id == "hq"
    assert list(calendar.resources.values_list("address", flat=True)) == ["big-hall@contoso.com"]

    page.goto("/console/hall/")
    assert page.get_attribute("#console", "data-outcome") == "ok"
    assert page.locator(".ews-day").count() == 3


@pytest.fixture
def troubled(db: None) -> None:
    """One calendar of every status, a worker, and a secret expiring in 10 days."""
    now = timezone.now()
    app = AppRegistration.objects.create(
        name="contoso-signage",
        tenant="contoso.onmicrosoft.com",
        client_id="11111111-2222-3333-4444-555555555555",
        client_secret="fake-secret-browser",
        secret_expires=timezone.localdate() + dt.timedelta(days=10),
    )
    account = ServiceAccount.objects.create(
        name="delegate-hq", username="delegate@contoso.com", password="fake-password-browser"
    )
    onprem = Server.objects.create(
        server_id="hq",
        type="ews",
        base_uri="https://127.0.0.1:9",
        label="Head office",
        service_account=account,
    )
    online = Server.objects.create(
        server_id="o365",
        type="ews",
        base_uri="https://outlook.office365.com",
        label="Exchange Online (EWS)",
        app_registration=app,
    )

    def calendar(name: str, server: Server, age: dt.timedelta | None, events: int = 5) -> Calendar:
        made = Calendar.objects.create(calendar_id=name, server=server)
        Resource.objects.create(calendar=made, address=f"{name}@contoso.com")
        if age is not None:
            Snapshot.objects.create(
                calendar=made,
                ics="",
                etag="e",
                generated=now - age,
                changed=now - age,
                event_count=events,
            )
            RefreshStatus.objects.create(
                calendar=made,
                last_attempt=now - age,
                last_success=now - age,
                last_duration=0.31,
                next_refresh=now - age + dt.timedelta(minutes=5),
            )
        return made

    calendar("reception", onprem, dt.timedelta(minutes=1), 12)
    calendar("boardroom", onprem, dt.timedelta(hours=3), 4)
    failing = calendar("meeting-room-3", onprem, dt.timedelta(minutes=40), 6)
    RefreshStatus.objects.filter(calendar=failing).update(
        last_attempt=now,
        last_error="delegate@contoso.com may not read the calendar of meeting-room-3@contoso.com.",
        last_error_code="ErrorAccessDenied",
        last_error_hint="Give the service account rights on the room mailbox, e.g. "
        "Add-MailboxPermission -Identity meeting-room-3@contoso.com -User "
        "delegate@contoso.com -AccessRights FullAccess -AutoMapping $false.",
        last_error_at=now,
        consecutive_failures=2,
    )
    calendar("cafeteria", online, dt.timedelta(minutes=2), 3)
    calendar("new-wing", onprem, None)
    WorkerHeartbeat.objects.create(name="signage-host:4121", seen=now, pid=4122)


def test_status_page_puts_broken_first_and_updates_itself(
    page: Any, screenshot: Any, admin_user: User, troubled: None
) -> None:
    log_in(page, "admin", TEST_PASSWORD)
    page.goto("/status/")
    rows = page.locator("tr[data-calendar]")
    order = [rows.nth(i).get_attribute("data-calendar") for i in range(rows.count())]
    assert order == ["meeting-room-3", "boardroom", "cafeteria", "new-wing", "reception"]
    assert page.locator(
        "tr[data-calendar='meeting-room-3'] td[data-label='Status'] .status"
    ).inner_text().lower() == ("failing")
    assert page.get_by_text("Add-MailboxPermission").first.is_visible()
    assert page.get_by_text("EWS retiring").first.is_visible()
    screenshot(page, "status", full_page=True)

    # The page fetches its fragment again without a reload.
    RefreshStatus.objects.filter(calendar__calendar_id="meeting-room-3").update(
        consecutive_failures=0, last_success=timezone.now()
    )
    Snapshot.objects.filter(calendar__calendar_id="meeting-room-3").update(generated=timezone.now())
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    page.wait_for_selector("tr[data-calendar='meeting-room-3'] .status-ok")
    assert "Updated at" in page.inner_text("#status-updated")


def test_expiry_banner_for_a_secret_expiring_in_10_days(
    page: Any, screenshot: Any, admin_user: User, troubled: None
) -> None:
    log_in(page, "admin", TEST_PASSWORD)
    page.goto("/admin/")
    banner = page.locator(".ews-banner")
    assert banner.count() == 1
    assert "contoso-signage expires in 10 days" in banner.inner_text()
    assert "expiring" in banner.get_attribute("class")
    assert "fake-secret" not in page.content()
    screenshot(page, "admin-banner", clip={"x": 0, "y": 0, "width": 1280, "height": 330})


def test_pages_fit_a_phone(page: Any, admin_user: User, troubled: None) -> None:
    page.set_viewport_size(PHONE)
    log_in(page, "admin", TEST_PASSWORD)
    page.goto("/status/")
    assert no_horizontal_scroll(page)
    # On a phone each row becomes a card whose cells say what they are.
    label = page.evaluate(
        "getComputedStyle(document.querySelector('td[data-label]'), '::before').content"
    )
    assert "Status" in label


def test_console_fits_a_phone(
    page: Any, admin_user: User, fake_ews: FakeExchange, ews_server: Server
) -> None:
    calendar = Calendar.objects.create(calendar_id="lobby", server=ews_server)
    Resource.objects.create(calendar=calendar, address="room-a@contoso.com")
    page.set_viewport_size(PHONE)
    log_in(page, "admin", TEST_PASSWORD)
    page.goto("/console/lobby/")
    assert page.get_attribute("#console", "data-outcome") == "ok"
    assert no_horizontal_scroll(page)


def test_staff_member_gets_403_on_credentials_in_the_browser(
    page: Any, staff_user: User, troubled: None
) -> None:
    log_in(page, "staff", TEST_PASSWORD)
    response = page.goto("/admin/accounts/appregistration/")
    assert response is not None and response.status == 403
    response = page.goto("/status/")
    assert response is not None and response.status == 200
    assert page.get_by_text("contoso-signage").first.is_visible()
    assert "fake-secret" not in page.content()


def test_console_streams_its_steps_then_shows_the_code_on_top(
    page: Any, staff_user: User, fake_ews: FakeExchange, ews_server: Server
) -> None:
    calendar = Calendar.objects.create(calendar_id="lobby", server=ews_server)
    Resource.objects.create(calendar=calendar, address="room-a@contoso.com")
    fake_ews.revoke(EWS_DELEGATE, "room-a@contoso.com")
    fake_ews.faults.latency = 1.5  # each answer of Exchange takes a second and a half
    log_in(page, "staff", TEST_PASSWORD)
    page.goto("/console/lobby/", wait_until="commit")
    # The connection step shows while the calendar view is still on its way.
    page.wait_for_selector("li.ews-step[data-step='connect']", timeout=10_000)
    assert page.query_selector("#outcome") is None
    assert page.get_attribute("#console", "data-outcome") == "running"
    page.wait_for_selector("#outcome", timeout=20_000)
    page.wait_for_load_state("load")
    assert page.get_attribute("#console", "data-outcome") == "failing"
    # The outcome moved above the steps, with Exchange's own code beside the message.
    assert page.query_selector("#outcome-slot #outcome") is not None
    assert page.inner_text("#outcome code.ews-code") == "ErrorAccessDenied"
    assert page.inner_text("#outcome .ews-failed-step") == "Fetch room-a@contoso.com"
    assert not page.is_visible("#running")
