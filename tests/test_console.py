"""The test console: a live fetch through the refresh's pipeline, shown step by step."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.http import StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.test import Client

from accounts.models import AppRegistration
from connector.models import Alarm, Calendar, Filter, RefreshStatus, Resource, Server, Snapshot
from tests.fakes.graph import FakeGraph
from tests.fakes.identity import FakeIdentityPlatform
from tests.fixtures.feed import parse_feed
from tests.fixtures.identity import GRAPH_CLIENT_ID
from tests.fixtures.users import TEST_PASSWORD

# The console's fetch runs in a thread of its own, with its own database connection.
pytestmark = pytest.mark.django_db(transaction=True)


def body(response: HttpResponseBase) -> str:
    """The whole page, streamed or not."""
    if isinstance(response, StreamingHttpResponse):
        return b"".join(response.streaming_content).decode()  # type: ignore[arg-type]
    return bytes(response.content).decode()


def failed_step(html: str) -> str:
    """The step the headline names, which must be a failed step of the step list."""
    import html as htmllib
    import re

    named = re.search(r'<span class="ews-failed-step">(.*?)</span>', html, re.S)
    assert named is not None, "no headline"
    title = htmllib.unescape(named.group(1))
    failed = [
        htmllib.unescape(match)
        for match in re.findall(
            r'data-ok="false">.*?<span class="ews-step-title">(.*?)</span>', html, re.S
        )
    ]
    assert title in failed, (title, failed)
    return title


@pytest.fixture
def calendar(graph_server: Server) -> Calendar:
    calendar = Calendar.objects.create(calendar_id="hall", server=graph_server, request_window=7)
    Resource.objects.create(calendar=calendar, address="room-a@contoso.com", position=0)
    Resource.objects.create(calendar=calendar, address="room-b@contoso.com", position=1)
    Filter.objects.create(calendar=calendar, subject="*##*")
    Alarm.objects.create(calendar=calendar, edge="start", related="event-start", offset=-600)
    return calendar


@pytest.fixture
def staff(client: Client, staff_user: User) -> Client:
    client.login(username="staff", password=TEST_PASSWORD)
    return client


def test_console_shows_steps_events_timeline_and_ics(
    staff: Client, calendar: Calendar, fake_graph: FakeGraph
) -> None:
    response = staff.get("/console/hall/")
    html = body(response)
    assert response.status_code == 200
    assert 'data-outcome="ok"' in html
    # Steps with durations: the token, one request per room with its item count, filters, ICS.
    assert 'data-step="token"' in html and "new token, valid until" in html
    assert html.count('data-step="fetch"') >= 2
    assert "room-a@contoso.com" in html and "room-b@contoso.com" in html
    assert " ms</span>" in html
    # Every event kept or dropped, with the filter that dropped it.
    assert "filterIsCancelled" in html and "Cancelled review" in html
    assert "filterSubject" in html and "subject matches *##*" in html
    # Privacy by default: the private event is listed masked.
    assert "Private chat" not in html
    assert "(masked)" in html
    # Alarms computed ten minutes before the start.
    assert "alarm: appears" in html
    # The timeline has a bar per room and day with the events placed on it.
    assert html.count('class="ews-room"') == 2
    assert 'class="ews-event ' in html and "09:00 Weekly sync" in html
    # The iCalendar, shown and downloadable.
    assert "BEGIN:VCALENDAR" in html
    assert 'download="hall.ics"' in html
    # A test: nothing saved.
    assert not Snapshot.objects.exists()
    assert not RefreshStatus.objects.filter(last_attempt__isnull=False).exists()


def test_console_ics_download_is_the_feed(
    staff: Client, calendar: Calendar, fake_graph: FakeGraph
) -> None:
    response = staff.get("/console/hall/?format=ics")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/calendar; charset=utf-8"
    assert 'filename="hall.ics"' in response["Content-Disposition"]
    parsed = parse_feed(response.content)
    summaries = {str(event["SUMMARY"]) for event in parsed.walk("VEVENT")}
    assert "Weekly sync" in summaries and "Cancelled review" not in summaries
    assert not Snapshot.objects.exists()


def test_console_text_version(staff: Client, calendar: Calendar, fake_graph: FakeGraph) -> None:
    response = staff.get("/console/hall/?format=text")
    text = body(response)
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert "Steps:" in text and "Result: OK" in text
    assert "dropped  " in text and "<- filterIsCancelled (cancelled)" in text


def test_expired_secret_fails_at_the_token_step_with_its_hint(
    staff: Client,
    calendar: Calendar,
    fake_identity: FakeIdentityPlatform,
    fake_graph: FakeGraph,
    app_registration: AppRegistration,
) -> None:
    fake_identity.expire_secret(GRAPH_CLIENT_ID)
    html = body(staff.get("/console/hall/"))
    assert 'data-outcome="failing"' in html
    assert failed_step(html).startswith("Token from https://")
    assert "AADSTS7000222" in html
    assert 'data-step="token" data-ok="false"' in html
    assert "fake-secret" not in html
    # The credential is marked, so the status page and banner say "expired".
    app_registration.refresh_from_db()
    assert app_registration.expiry_status() == "expired"
    assert fake_graph.calendar_view_requests() == []


def test_graph_refusing_the_app_shows_the_request_step_and_hint(
    staff: Client, calendar: Calendar, fake_graph: FakeGraph
) -> None:
    fake_graph.revoke(GRAPH_CLIENT_ID)
    html = body(staff.get("/console/hall/"))
    assert failed_step(html) == "Graph calendarView of room-a@contoso.com"
    assert '<code class="ews-code"' in html and "HTTP 403 ErrorAccessDenied" in html
    assert "Calendars.Read" in html


def test_anonymous_users_go_to_login_and_outsiders_get_403(
    client: Client, calendar: Calendar, outsider: User
) -> None:
    response = client.get("/console/hall/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=/console/hall/")
    client.login(username="outsider", password=TEST_PASSWORD)
    assert client.get("/console/hall/").status_code == 403


def test_unknown_calendar_is_404(staff: Client, db: None) -> None:
    assert staff.get("/console/nope/").status_code == 404


def test_debug_yes_on_2ical_shows_the_trace_to_staff_only(
    client: Client, calendar: Calendar, fake_graph: FakeGraph, staff_user: User, outsider: User
) -> None:
    url = "/plugnCast/.applets/.ews-calendar/2ical.php?calendarId=hall&debug=yes"
    anonymous = client.get(url)
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    client.login(username="outsider", password=TEST_PASSWORD)
    refused = client.get(url)
    assert refused.status_code == 403 and b"Steps" not in refused.content
    client.login(username="staff", password=TEST_PASSWORD)
    shown = client.get(url)
    assert shown.status_code == 200
    assert 'data-step="token"' in body(shown)
    assert not Snapshot.objects.exists()


def test_refresh_now_saves_the_snapshot(
    staff: Client, calendar: Calendar, fake_graph: FakeGraph
) -> None:
    response = staff.post("/console/hall/refresh/")
    assert response.status_code == 302 and response["Location"].startswith("/status/")
    snapshot = Snapshot.objects.get(calendar=calendar)
    assert snapshot.event_count > 0
    page = staff.get(response["Location"]).content.decode()
    assert "Refreshed: hall: ok" in page


def test_refresh_now_needs_post_and_the_right(
    client: Client, calendar: Calendar, outsider: User
) -> None:
    client.login(username="outsider", password=TEST_PASSWORD)
    assert client.post("/console/hall/refresh/").status_code == 403
    assert not Snapshot.objects.exists()


def test_test_calendar_command_prints_the_trace(calendar: Calendar, fake_graph: FakeGraph) -> None:
    out = StringIO()
    call_command("test_calendar", "hall", stdout=out)
    text = out.getvalue()
    assert "Steps:" in text and "new token, valid until" in text
    assert "What the screens show:" in text and "room-a@contoso.com:" in text
    assert "Result: OK" in text
    assert not Snapshot.objects.exists()


def test_test_calendar_command_fails_with_the_hint(
    calendar: Calendar, fake_identity: FakeIdentityPlatform, fake_graph: FakeGraph
) -> None:
    fake_identity.expire_secret(GRAPH_CLIENT_ID)
    out = StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("test_calendar", "hall", stdout=out)
    assert raised.value.returncode == 1
    assert "failed at “Token from https://" in str(raised.value)
    assert "(AADSTS7000222)" in str(raised.value)
    assert "Hint:" in out.getvalue()


def test_test_calendar_command_unknown_id(db: None) -> None:
    with pytest.raises(CommandError, match="No calendar with id 'nope'"):
        call_command("test_calendar", "nope", stdout=StringIO())
