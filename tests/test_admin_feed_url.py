"""The feed URL where an administrator looks for it: the calendar's page, the list, /status/."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from connector.models import Calendar
from tests.fixtures.users import TEST_PASSWORD

pytestmark = pytest.mark.django_db

KEY = "Ab3dEf6hIj9kLm0nOp1q"  # a fake feed key with the required strength


def client_for(user: User, host: str) -> Client:
    client = Client(HTTP_HOST=host)
    assert client.login(username=user.username, password=TEST_PASSWORD)
    return client


@pytest.fixture(autouse=True)
def host_names(settings: Any) -> None:
    settings.ALLOWED_HOSTS = ["signage.example.com", "10.0.0.5", "screens.local"]


@pytest.fixture
def lobby(make_calendar: Any) -> Calendar:
    calendar: Calendar = make_calendar("lobby", feed_key=KEY)
    return calendar


def test_calendar_page_shows_absolute_feed_urls_by_the_host_the_admin_used(
    admin_user: User, lobby: Calendar
) -> None:
    page = client_for(admin_user, "signage.example.com").get(
        f"/admin/connector/calendar/{lobby.pk}/change/"
    )
    text = page.content.decode()
    assert 'id="feed-url-plain">http://signage.example.com/ical/lobby.ics</code>' in text
    keyed = f"http://signage.example.com/ical/lobby.ics?key={KEY}"
    assert f'id="feed-url-keyed">{keyed}</code>' in text
    assert f'data-copy="{keyed}"' in text
    # The copy button's script is a file: no inline script is needed.
    assert "/static/connector/copy.js" in text
    assert "<script>" not in re.sub(r"<script[^>]*src=[^>]*>", "", text)


def test_calendar_page_feed_url_follows_another_host_name(
    admin_user: User, lobby: Calendar
) -> None:
    page = client_for(admin_user, "10.0.0.5:8000").get(
        f"/admin/connector/calendar/{lobby.pk}/change/"
    )
    assert "http://10.0.0.5:8000/ical/lobby.ics" in page.content.decode()


def test_calendar_page_shows_a_qr_code_of_the_feed_url(admin_user: User, lobby: Calendar) -> None:
    text = (
        client_for(admin_user, "signage.example.com")
        .get(f"/admin/connector/calendar/{lobby.pk}/change/")
        .content.decode()
    )
    block = text.split('id="feed-qr">', 1)[1].split("</div>", 1)[0]
    assert block.startswith("<svg") and 'class="qrline"' in block
    assert "QR code of http://signage.example.com/ical/lobby.ics" in block
    import segno

    expected = segno.make("http://signage.example.com/ical/lobby.ics", error="m")
    path = re.search(r'class="qrline"[^>]* d="([^"]+)"', block)
    assert path is not None
    assert path.group(1) in expected.svg_inline(scale=4, border=2)


def test_view_on_site_opens_the_feed_with_its_key(admin_user: User, lobby: Calendar) -> None:
    client = client_for(admin_user, "signage.example.com")
    text = client.get(f"/admin/connector/calendar/{lobby.pk}/change/").content.decode()
    link = re.search(r'href="([^"]+)" class="viewsitelink"', text)
    assert link is not None
    assert html.unescape(link.group(1)) == f"/ical/lobby.ics?key={KEY}"


def test_id_help_text_shows_the_id_placeholder(admin_user: User, lobby: Calendar) -> None:
    text = (
        client_for(admin_user, "signage.example.com")
        .get("/admin/connector/calendar/add/")
        .content.decode()
    )
    assert "/ical/&lt;id&gt;.ics" in text
    assert "/ical/<id>.ics" not in text


def test_calendar_list_has_a_feed_url_column_with_copy_buttons(
    admin_user: User, lobby: Calendar
) -> None:
    text = (
        client_for(admin_user, "screens.local").get("/admin/connector/calendar/").content.decode()
    )
    assert "feed URL" in text
    assert '<code class="ews-feed-url">http://screens.local/ical/lobby.ics</code>' in text
    assert 'data-copy="http://screens.local/ical/lobby.ics"' in text
    assert "/static/connector/copy.js" in text


def test_status_page_and_fragment_show_each_feed_url(admin_user: User, lobby: Calendar) -> None:
    client = client_for(admin_user, "screens.local")
    for url in ("/status/", "/status/fragment/"):
        text = client.get(url).content.decode()
        assert 'data-copy="http://screens.local/ical/lobby.ics"' in text, url
        assert KEY not in text, url
    assert "/static/connector/copy.js" in client.get("/status/").content.decode()
