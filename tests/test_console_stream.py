"""The test console answers fast and tells all: steps streamed as they end, a time
budget whatever Exchange does, Exchange's own codes, the rooms that worked beside the
one that failed, each event's sensitivity and free/busy, and the calendar processing
hint for subjects a room mailbox rewrote."""

from __future__ import annotations

import html as htmllib
import re
import time
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from pytest_django.fixtures import Settings

from accounts.models import ServiceAccount
from connector.models import Calendar, Resource, Server, Snapshot
from tests.fakes.ews import FakeExchange
from tests.fakes.graph import FakeGraph
from tests.fakes.identity import FakeIdentityPlatform
from tests.fakes.rooms import FakeEvent
from tests.fixtures.identity import GRAPH_CLIENT_ID
from tests.fixtures.users import TEST_PASSWORD

# The console's fetch runs in a thread of its own, with its own database connection.
pytestmark = pytest.mark.django_db(transaction=True)

ROOM_A, ROOM_B = "room-a@contoso.com", "room-b@contoso.com"


@pytest.fixture
def staff(client: Client, staff_user: User) -> Client:
    client.login(username="staff", password=TEST_PASSWORD)
    return client


def _calendar(server: Server, *rooms: str) -> Calendar:
    calendar = Calendar.objects.create(calendar_id="hall", server=server, request_window=7)
    for position, room in enumerate(rooms):
        Resource.objects.create(calendar=calendar, address=room, position=position)
    return calendar


def page(client: Client, url: str = "/console/hall/") -> str:
    response = client.get(url)
    assert response.status_code == 200
    return htmllib.unescape(b"".join(response.streaming_content).decode())  # type: ignore[arg-type]


def headline(html: str) -> tuple[str, str]:
    """(the failed step the headline names, the code beside the message)."""
    found = re.search(
        r'Failed at <span class="ews-failed-step">(.*?)</span>:</strong>.*?'
        r'<code class="ews-code"[^>]*>(.*?)</code>',
        html,
        re.S,
    )
    assert found is not None, html[-3000:]
    return found.group(1), found.group(2)


def failed_titles(html: str) -> list[str]:
    return re.findall(r'data-ok="false">.*?<span class="ews-step-title">(.*?)</span>', html, re.S)


# -- streaming -----------------------------------------------------------------------


def test_the_first_step_arrives_before_the_fetch_ends(
    staff: Client, graph_server: Server, fake_graph: FakeGraph
) -> None:
    _calendar(graph_server, ROOM_A)
    fake_graph.work_time = 3.0  # each calendarView answer takes three seconds
    started = time.monotonic()
    response = staff.get("/console/hall/")
    assert response["X-Accel-Buffering"] == "no"
    chunks = iter(response.streaming_content)  # type: ignore[arg-type]
    arrivals: list[tuple[float, str]] = []
    for chunk in chunks:
        arrivals.append((time.monotonic() - started, bytes(chunk).decode()))
        if 'data-step="token"' in arrivals[-1][1]:
            break
    token_at = arrivals[-1][0]
    assert token_at < 1.0, arrivals  # the token step, within a second
    assert fake_graph.calendar_view_requests() == [] or token_at < 3.0
    rest = "".join(bytes(chunk).decode() for chunk in chunks)
    ended = time.monotonic() - started
    assert ended >= 3.0  # the page went on while Graph answered
    assert 'data-outcome="ok"' in rest and 'data-step="fetch"' in rest
    # The page's top came first, alone: the steps follow it.
    assert '<h2 id="steps">' in arrivals[0][1] and 'data-step="' not in arrivals[0][1]


# -- the budget ----------------------------------------------------------------------


def test_a_hanging_exchange_gets_an_answer_within_the_budget(
    staff: Client, ews_server: Server, fake_ews: FakeExchange, settings: Settings
) -> None:
    settings.CONSOLE_BUDGET_SECONDS = 2
    settings.EXCHANGE_REQUEST_TIMEOUT = 5  # the thread left behind ends soon after
    fake_ews.faults.latency = 8.0  # answers nothing for longer than the console waits
    _calendar(ews_server, ROOM_A)
    started = time.monotonic()
    html = page(staff)
    assert time.monotonic() - started < 3.5
    assert "No answer within the console's 2 seconds" in html
    assert "was still running" in html and "CONSOLE_BUDGET_SECONDS" in html
    step, code = headline(html)
    assert step.startswith("Connect to 127.0.0.1") and code == "no answer"
    time.sleep(4)  # let the thread left behind give up before the database is flushed


def test_a_busy_exchange_is_tried_once_and_its_back_off_shown(
    staff: Client, ews_server: Server, fake_ews: FakeExchange
) -> None:
    # A back-off the refresh would wait for (two seconds): the console does not.
    fake_ews.inject_busy(count=20, back_off_ms=2_000)
    _calendar(ews_server, ROOM_A)
    started = time.monotonic()
    html = page(staff)
    assert time.monotonic() - started < 2.0
    assert [op.outcome for op in fake_ews.ops].count("busy") == 1
    step, code = headline(html)
    assert code == "ErrorServerBusy" and step in failed_titles(html)
    assert "Exchange asked to wait 2 seconds before the next request" in html


def test_a_long_back_off_is_shown_in_minutes(
    staff: Client, ews_server: Server, fake_ews: FakeExchange
) -> None:
    fake_ews.inject_busy(count=20, back_off_ms=600_000)
    _calendar(ews_server, ROOM_A)
    html = page(staff)
    assert "Exchange asked to wait 10 minutes" in html
    assert [op.outcome for op in fake_ews.ops].count("busy") == 1


def test_graph_throttling_is_tried_once_with_its_retry_after(
    staff: Client, graph_server: Server, fake_graph: FakeGraph
) -> None:
    fake_graph.throttle_next(10, retry_after=3)
    _calendar(graph_server, ROOM_A)
    started = time.monotonic()
    html = page(staff)
    assert time.monotonic() - started < 3.0  # Retry-After not waited for
    assert len(fake_graph.calendar_view_requests(ROOM_A)) == 1
    step, code = headline(html)
    assert step == f"Graph calendarView of {ROOM_A}"
    assert code.startswith("HTTP 429")
    assert "Exchange asked to wait 3 seconds" in html


# -- the step the headline names -----------------------------------------------------


def test_a_refused_login_in_the_request_is_not_called_a_connection_failure(
    staff: Client, ews_server: Server, fake_ews: FakeExchange
) -> None:
    # The version is known, so the connection sends nothing: the first request to
    # Exchange is the calendar view, and its 401 fails the fetch step.
    Server.objects.filter(pk=ews_server.pk).update(ews_version="15.1.2507.6")
    ServiceAccount.objects.filter(pk=ews_server.service_account_id).update(
        password="fake-wrong-password"
    )
    _calendar(ews_server, ROOM_A)
    html = page(staff)
    step, code = headline(html)
    assert step == f"Fetch {ROOM_A}" and code == "HTTP 401"
    assert 'data-step="connect" data-ok="true"' in html


def test_an_unreachable_identity_platform_is_not_called_exchange(
    staff: Client, graph_server: Server, fake_identity: FakeIdentityPlatform
) -> None:
    fake_identity.faults.down = True
    _calendar(graph_server, ROOM_A)
    html = page(staff)
    step, code = headline(html)
    assert step.startswith("Token from https://127.0.0.1")
    assert code in ("RemoteDisconnected", "ConnectionResetError", "ConnectionAbortedError")
    assert "The identity platform is down, or a firewall" in html
    assert "Exchange is down" not in html


# -- room by room --------------------------------------------------------------------


def test_the_rooms_that_worked_are_shown_when_one_fails(
    staff: Client, graph_server: Server, fake_graph: FakeGraph
) -> None:
    fake_graph.limit_to(GRAPH_CLIENT_ID, {ROOM_A})  # room B is outside the app's scope
    _calendar(graph_server, ROOM_A, ROOM_B)
    html = page(staff)
    assert 'data-outcome="partial"' in html
    assert "1 of 2 resources could not be read" in html
    # Room A's events and timeline.
    assert "Weekly sync" in html and f'<section class="ews-room" data-resource="{ROOM_A}">' in html
    assert f'data-resource="{ROOM_A}" data-ok="true"' in html
    # Room B: its error, Graph's own code and the hint; not drawn as free.
    row = html.split(f'data-resource="{ROOM_B}" data-ok="false"', 1)[1].split("</tr>", 1)[0]
    assert "HTTP 403 ErrorAccessDenied" in row and "Test-ServicePrincipalAuthorization" in row
    assert "A screen must not show this room as free" in html
    assert "Download .ics" not in html
    assert not Snapshot.objects.exists()


def test_test_calendar_shows_codes_step_names_and_rooms(
    graph_server: Server, fake_graph: FakeGraph
) -> None:
    fake_graph.limit_to(GRAPH_CLIENT_ID, {ROOM_A})
    _calendar(graph_server, ROOM_A, ROOM_B)
    out = StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("test_calendar", "hall", stdout=out)
    text = out.getvalue()
    assert raised.value.returncode == 1
    assert f"partly failed at “Graph calendarView of {ROOM_B}”" in str(raised.value)
    assert "(HTTP 403 ErrorAccessDenied)" in str(raised.value)
    assert f"  ok      {ROOM_A}: " in text
    assert f"  FAILED  {ROOM_B} at “Graph calendarView of {ROOM_B}”" in text
    assert "code: HTTP 403 ErrorAccessDenied" in text
    assert "Result: PARTLY FAILED: 1 of 2 rooms could not be read" in text
    assert "Weekly sync" in text


# -- what each event row tells -------------------------------------------------------


def test_event_rows_show_sensitivity_and_free_busy(
    staff: Client, graph_server: Server, fake_graph: FakeGraph
) -> None:
    _calendar(graph_server, ROOM_A, ROOM_B)
    html = page(staff)
    assert '<th scope="col">Sensitivity</th>' in html and '<th scope="col">Free/busy</th>' in html
    sensitivities = set(re.findall(r'class="ews-sensitivity">(\w+)</td>', html))
    free_busy = set(re.findall(r'class="ews-free-busy">(\w+)</td>', html))
    assert {"Normal", "Private"} <= sensitivities
    assert {"Busy", "Tentative"} <= free_busy
    assert "Set-CalendarProcessing" not in html  # nothing looks rewritten here


def test_subjects_rewritten_by_the_room_mailbox_bring_the_calendar_processing_hint(
    staff: Client, graph_server: Server, fake_graph: FakeGraph
) -> None:
    template = fake_graph.rooms[ROOM_A][0]
    assert isinstance(template.start, __import__("datetime").datetime)
    # What AddOrganizerToSubject and DeleteSubject leave: the organizer's name, or nothing.
    fake_graph.rooms[ROOM_A].append(
        FakeEvent("Alice Organizer", template.start, template.end, organizer_name="Alice Organizer")
    )
    fake_graph.rooms[ROOM_A].append(FakeEvent("", template.start, template.end))
    _calendar(graph_server, ROOM_A, ROOM_B)
    html = page(staff)
    assert (
        f"Set-CalendarProcessing -Identity {ROOM_A} -AddOrganizerToSubject $false "
        "-DeleteSubject $false -RemovePrivateProperty $false"
    ) in html
    assert "1 with the organizer's name as subject, 1 without a subject" in html
    assert f"Set-CalendarProcessing -Identity {ROOM_B}" not in html
