"""Browser tests of the import: the feeds that disappear in red, the merge, a restore."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from connector import xmlconfig
from connector.models import Calendar, ConfigRevision, FeedFetch
from connector.services import fetches
from tests.fixtures.browser import log_in
from tests.fixtures.users import TEST_PASSWORD
from tests.xmlconfig_helpers import BASE, ONLY_LOBBY

pytestmark = pytest.mark.browser

RED = "rgb(180, 35, 24)"  # #b42318, static/connector/xmlconfig.css


def test_preview_shows_the_disappearing_feed_in_red_and_a_merge_removes_nothing(
    page: Any, screenshot: Any, admin_user: User, tmp_path: Path
) -> None:
    xmlconfig.import_configuration(BASE)
    fetches.forget()
    fetches.record_fetch(
        "hall", client="10.0.0.5", path="/ical/hall.ics", user_agent="player/1", status=200
    )
    FeedFetch.objects.filter(calendar_id="hall").update(
        at=timezone.now() - dt.timedelta(minutes=2, seconds=10)
    )
    upload = tmp_path / "lobby-only.xml"
    upload.write_bytes(ONLY_LOBBY)
    log_in(page, "admin", TEST_PASSWORD)

    # The whole file: hall's feed would go, and the preview says so in red.
    page.goto("/admin/connector/calendar/import/")
    merge = page.locator("input[name=merge]")
    assert merge.is_visible()
    assert not merge.is_checked()
    page.set_input_files("input[type=file]", str(upload))
    page.click("#xmlconfig-upload [type=submit]")
    page.wait_for_selector(".xmlconfig-disappearing")
    hall = page.locator(".xmlconfig-disappearing li[data-calendar=hall]")
    assert hall.is_visible()
    assert hall.inner_text() == (
        "/ical/hall.ics: players fetched /ical/hall.ics 2 minutes ago from 10.0.0.5 (status 200)"
    )
    assert hall.evaluate("li => getComputedStyle(li).color") == RED
    assert (
        page.locator(".xmlconfig-removed li", has_text="calendar hall").evaluate(
            "li => getComputedStyle(li).color"
        )
        == RED
    )
    assert page.get_by_text("1 feed will disappear").is_visible()
    screenshot(page, "import-preview", full_page=True)
    page.click("input[name=cancel]")
    page.wait_for_selector(".messagelist")
    assert Calendar.objects.filter(calendar_id="hall").exists()

    # The same file as a merge: nothing disappears, nothing is removed.
    page.goto("/admin/connector/calendar/import/")
    page.set_input_files("input[type=file]", str(upload))
    page.check("input[name=merge]")
    page.click("#xmlconfig-upload [type=submit]")
    page.wait_for_selector("input[name=confirm]")
    assert page.locator(".xmlconfig-disappearing").count() == 0
    assert page.locator(".xmlconfig-removed").count() == 0
    assert page.locator(".xmlconfig-merge").is_visible()
    page.click("input[name=confirm]")
    page.wait_for_selector(".messagelist")
    assert set(Calendar.objects.values_list("calendar_id", flat=True)) == {"hall", "lobby"}


def test_restore_a_revision_from_the_admin(page: Any, admin_user: User) -> None:
    xmlconfig.import_configuration(BASE)
    xmlconfig.import_configuration(ONLY_LOBBY)
    revision = ConfigRevision.objects.order_by("-pk")[0]
    log_in(page, "admin", TEST_PASSWORD)

    page.goto("/admin/connector/calendar/import/")
    page.click("text=Configuration revisions")
    page.locator(f"tr[data-revision='{revision.pk}'] a.xmlconfig-restore").click()
    page.wait_for_selector("input[name=confirm][value=Restore]")
    assert page.locator(".xmlconfig-added li", has_text="calendar hall").is_visible()
    page.click("input[name=confirm]")
    page.wait_for_selector(".messagelist .success")

    assert Calendar.objects.filter(calendar_id="hall").exists()
    assert f"Restored revision {revision.pk}" in page.inner_text(".messagelist")
