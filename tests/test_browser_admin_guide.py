"""Browser tests of the admin's feed URL, first-run guide and server form (Chromium)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from accounts.models import ServiceAccount
from connector.models import Calendar, Server
from connector.services import first_run
from tests.fakes.ews import FakeExchange
from tests.fixtures.browser import log_in
from tests.fixtures.exchange import EWS_DELEGATE
from tests.fixtures.users import TEST_PASSWORD

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def fresh_process() -> Any:
    first_run.forget_noted()
    yield
    first_run.forget_noted()


def test_calendar_page_shows_the_feed_url_copies_it_and_draws_its_qr_code(
    page: Any, live_server: Any, admin_user: User, make_calendar: Any
) -> None:
    calendar: Calendar = make_calendar("lobby")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    log_in(page, "admin", TEST_PASSWORD)
    page.goto(f"/admin/connector/calendar/{calendar.pk}/change/")

    url = f"{live_server.url}/ical/lobby.ics"
    assert page.text_content("#feed-url-plain") == url
    assert page.text_content("#feed-url-keyed") == f"{url}?key={calendar.feed_key}"
    assert page.locator("#feed-qr svg path.qrline").count() == 1
    assert page.locator("#feed-keyed-qr svg").is_visible()

    page.click("#feed-url button.ews-copy >> nth=0")
    page.wait_for_selector("#feed-url button.ews-copy:has-text('Copied')")
    assert page.evaluate("navigator.clipboard.readText()") == url

    # "View on site" opens the feed itself.
    href = page.get_attribute("a.viewsitelink", "href")
    assert href == f"/ical/lobby.ics?key={calendar.feed_key}"


def test_first_run_guide_leads_from_credential_to_feed_url(
    page: Any, admin_user: User, fake_ews: FakeExchange
) -> None:
    log_in(page, "admin", TEST_PASSWORD)
    page.goto("/")
    page.wait_for_selector("#first-run")
    states = page.eval_on_selector_all(
        "#first-run li", "items => items.map(item => item.dataset.state)"
    )
    assert states == ["next", "later", "later", "later"]

    page.click("#first-run a.ews-next-link")
    page.wait_for_url("**/admin/accounts/serviceaccount/add/")
    ServiceAccount.objects.create(name="delegate", username=EWS_DELEGATE, password="fake-pw")
    page.goto("/admin/")
    states = page.eval_on_selector_all(
        "#first-run li", "items => items.map(item => item.dataset.state)"
    )
    assert states == ["done", "next", "later", "later"]
    assert page.get_attribute("#first-run a.ews-next-link", "href") == (
        "/admin/connector/server/add/"
    )


def test_server_form_shows_the_fields_of_its_type_and_tests_the_connection(
    page: Any, admin_user: User, fake_ews: FakeExchange, ews_service_account: ServiceAccount
) -> None:
    log_in(page, "admin", TEST_PASSWORD)
    page.goto("/admin/connector/server/add/")

    page.select_option("#id_type", "graph")
    assert not page.is_visible("#id_http_scheme")
    assert not page.is_visible("#id_service_account")
    assert not page.is_visible("#id_autodiscover")
    assert page.is_visible("#id_app_registration")
    assert page.input_value("#id_base_uri") == "https://graph.microsoft.com"

    page.select_option("#id_type", "ics")
    assert page.is_visible("#id_service_account")
    assert not page.is_visible("#id_app_registration")

    page.select_option("#id_type", "ews")
    for field in ("#id_http_scheme", "#id_service_account", "#id_autodiscover"):
        assert page.is_visible(field), field

    page.fill("#id_server_id", "exchange")
    page.fill("#id_base_uri", fake_ews.url)
    page.select_option("#id_service_account", str(ews_service_account.pk))
    page.fill("#id_test_resource", "room-a@contoso.com")
    page.click("button.ews-test-connection")
    page.wait_for_selector("#connection-test-result .ews-test-result")
    assert page.get_attribute("#connection-test-result .ews-test-result", "data-outcome") == "ok"
    assert "Connected and read room-a@contoso.com" in page.text_content("#connection-test-result")
    assert page.url.endswith("/admin/connector/server/add/")  # still on the form
    assert not Server.objects.exists()  # nothing saved

    page.fill("#id_test_resource", "nobody@contoso.com")
    page.click("button.ews-test-connection")
    page.wait_for_selector("#connection-test-result .ews-test-result[data-outcome=failed]")
    assert page.locator("#connection-test-result code.ews-code").count() == 1
