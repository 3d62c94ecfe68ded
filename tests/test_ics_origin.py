"""Credentials go only to the iCalendar server's own origin; other URLs need the server right.

A calendar editor could set an ``ics`` resource to a listener of theirs and read
the service account's password from the Authorization header. The listener
here is a real HTTP server on 127.0.0.1 that logs the headers it receives.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from accounts.models import ServiceAccount
from connector.core.errors import SourceError
from connector.core.trace import Trace
from connector.models import Calendar, Filter, Resource, Server
from connector.services.refresh import refresh_calendars
from connector.sources.ics import IcsSource
from connector.validators import url_origin
from tests.fakes.icsorigin import FakeIcsOrigin
from tests.fixtures.icsorigin import published_origin
from tests.fixtures.users import TEST_PASSWORD
from tests.test_source_ics import calendar_text, window

FAKE_PASSWORD = "fake-secret-origin-password"
BASIC = "Basic " + base64.b64encode(f"signage:{FAKE_PASSWORD}".encode()).decode()


@pytest.fixture
def origin() -> Iterator[FakeIcsOrigin]:
    """The server's own origin, which asks for the service account."""
    with published_origin("signage", FAKE_PASSWORD) as fake:
        yield fake


@pytest.fixture(params=[False, True], ids=["http", "https"])
def listener(request: pytest.FixtureRequest) -> Iterator[FakeIcsOrigin]:
    """Someone else's server on 127.0.0.1 (another port), serving a calendar to anyone."""
    fake = FakeIcsOrigin(tls=request.param)
    fake.put("/steal.ics", calendar_text())
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def server(db: None, origin: FakeIcsOrigin) -> Server:
    account = ServiceAccount.objects.create(
        name="signage", username="signage", password=FAKE_PASSWORD
    )
    return Server.objects.create(
        server_id="published",
        type=Server.Type.ICS,
        base_uri=f"{origin.url}/published/",
        service_account=account,
    )


def calendar_on(server: Server, address: str) -> Calendar:
    calendar = Calendar.objects.create(calendar_id="room", server=server)
    Resource.objects.create(calendar=calendar, address=address)
    Filter.objects.create(calendar=calendar)
    return calendar


# -- the source ------------------------------------------------------------------------


def test_the_servers_own_origin_gets_the_credentials(server: Server, origin: FakeIcsOrigin) -> None:
    assert IcsSource(server).fetch("room.ics", window())
    assert IcsSource(server).fetch(f"{origin.url}/published/room.ics", window())
    assert origin.authorizations() == [BASIC, BASIC]


def test_a_url_on_another_origin_is_fetched_without_credentials(
    server: Server, listener: FakeIcsOrigin
) -> None:
    trace = Trace()
    records = IcsSource(server, trace=trace).fetch(f"{listener.url}/steal.ics", window())

    assert records  # fetched all the same: a public calendar needs no credentials
    assert listener.authorizations() == [""]
    assert any("credentials not sent" in note for note in trace.steps[0].details)


def test_the_calendars_own_credentials_stay_home_too(
    server: Server, listener: FakeIcsOrigin
) -> None:
    calendar = Calendar.objects.create(
        calendar_id="own", server=server, username="reader", password="fake-secret-reader"
    )
    IcsSource(server, calendar=calendar).fetch(f"{listener.url}/steal.ics", window())
    assert listener.authorizations() == [""]


def test_a_redirect_to_another_origin_drops_the_credentials(
    server: Server, origin: FakeIcsOrigin, listener: FakeIcsOrigin
) -> None:
    origin.redirect("/published/moved.ics", f"{listener.url}/steal.ics")

    assert IcsSource(server).fetch("moved.ics", window())

    assert origin.authorizations() == [BASIC]
    assert listener.authorizations() == [""]


def test_a_redirect_within_the_origin_keeps_them(server: Server, origin: FakeIcsOrigin) -> None:
    origin.redirect("/published/old.ics", "/published/room.ics", status=301)
    assert IcsSource(server).fetch("old.ics", window())
    assert origin.authorizations() == [BASIC, BASIC]


def test_a_redirect_loop_ends(server: Server, origin: FakeIcsOrigin) -> None:
    origin.redirect("/published/loop.ics", "/published/loop.ics")
    with pytest.raises(SourceError) as excinfo:
        IcsSource(server).fetch("loop.ics", window())
    assert excinfo.value.code == "ics-redirect"


def test_a_url_two_parsers_read_differently_gets_no_credentials(
    server: Server, origin: FakeIcsOrigin, listener: FakeIcsOrigin
) -> None:
    # urllib reads the host after the '@' (the server's port); urllib3, which requests
    # connects with, reads the one before (the listener's port).
    tricky = f"{listener.url}\\@127.0.0.1:{origin.port}/steal.ics"
    with pytest.raises(SourceError):  # the listener has no such path: a 404
        IcsSource(server).fetch(tricky, window())
    assert listener.authorizations() == [""]
    assert origin.authorizations() == []


def test_a_refusal_elsewhere_says_the_credentials_were_not_sent(
    server: Server, listener: FakeIcsOrigin
) -> None:
    listener.credentials = ("signage", FAKE_PASSWORD)
    with pytest.raises(SourceError) as excinfo:
        IcsSource(server).fetch(f"{listener.url}/steal.ics", window())
    assert excinfo.value.code == "http-401"
    assert "not sent" in excinfo.value.message
    assert "own origin" in excinfo.value.hint
    assert listener.authorizations() == [""]


def test_a_folder_base_uri_sends_credentials_to_no_url(
    db: None, tmp_path: Any, listener: FakeIcsOrigin
) -> None:
    account = ServiceAccount.objects.create(name="files", username="signage", password="fake-pw")
    files = Server.objects.create(
        server_id="files", type=Server.Type.ICS, base_uri=str(tmp_path), service_account=account
    )
    IcsSource(files).fetch(f"{listener.url}/steal.ics", window())
    assert listener.authorizations() == [""]


# -- the console and the refresh -------------------------------------------------------


@pytest.fixture
def staff(client: Client, staff_user: User) -> Client:
    assert client.login(username="staff", password=TEST_PASSWORD)
    return client


@pytest.mark.django_db(transaction=True)  # the console reads in a thread of its own
def test_console_and_refresh_send_no_credentials_to_another_origin(
    staff: Client, server: Server, listener: FakeIcsOrigin
) -> None:
    calendar = calendar_on(server, f"{listener.url}/steal.ics")

    console = staff.get(f"/console/{calendar.calendar_id}/?format=text")
    text = b"".join(console.streaming_content).decode()
    (outcome,) = refresh_calendars([calendar])

    assert console.status_code == 200
    assert outcome.ok
    assert listener.authorizations() == ["", ""]
    assert FAKE_PASSWORD not in text


@pytest.mark.django_db(transaction=True)  # the console reads in a thread of its own
def test_console_and_refresh_still_authenticate_at_home(
    staff: Client, server: Server, origin: FakeIcsOrigin
) -> None:
    calendar = calendar_on(server, "room.ics")

    console = staff.get(f"/console/{calendar.calendar_id}/?format=text")
    b"".join(console.streaming_content)
    (outcome,) = refresh_calendars([calendar])

    assert console.status_code == 200 and outcome.ok
    assert origin.authorizations() == [BASIC, BASIC]


# -- the admin: pointing a calendar elsewhere needs the right to change servers --------


@pytest.fixture
def editor(db: None) -> User:
    """Staff allowed to change calendars and their resources, not servers."""
    user = User.objects.create_user("editor", password=TEST_PASSWORD, is_staff=True)
    codenames = [
        "view_calendar",
        "change_calendar",
        "view_resource",
        "add_resource",
        "change_resource",
        "delete_resource",
        "view_filter",
        "view_alarm",
        "view_server",
    ]
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="connector", codename__in=codenames)
    )
    return user


def change_form(calendar: Calendar, address: str) -> dict[str, Any]:
    resource = calendar.resources.get()
    return {
        "calendar_id": calendar.calendar_id,
        "server": str(calendar.server_id),
        "label": "",
        "request_window": "7",
        "cache_persistence": "300",
        "timezone": "",
        "username": "",
        "password": "",
        "resources-TOTAL_FORMS": "1",
        "resources-INITIAL_FORMS": "1",
        "resources-MIN_NUM_FORMS": "0",
        "resources-MAX_NUM_FORMS": "1000",
        "resources-0-id": str(resource.pk),
        "resources-0-calendar": str(calendar.pk),
        "resources-0-address": address,
        "resources-0-position": "0",
        "filter-TOTAL_FORMS": "1",
        "filter-INITIAL_FORMS": "1",
        "filter-MIN_NUM_FORMS": "0",
        "filter-MAX_NUM_FORMS": "1",
        "filter-0-id": str(calendar.filter.pk),
        "filter-0-calendar": str(calendar.pk),
        "filter-0-is_cancelled": "on",
        "filter-0-mask_sensitivity": ["Personal", "Private", "Confidential"],
        "filter-0-detail_level": "full",
        "filter-0-subject": "",
        "alarms-TOTAL_FORMS": "0",
        "alarms-INITIAL_FORMS": "0",
        "alarms-MIN_NUM_FORMS": "0",
        "alarms-MAX_NUM_FORMS": "2",
    }


def post_change(client: Client, calendar: Calendar, address: str) -> Any:
    return client.post(
        f"/admin/connector/calendar/{calendar.pk}/change/", change_form(calendar, address)
    )


@pytest.mark.parametrize(
    "address",
    [
        "http://127.0.0.1:9/steal.ics",
        "//127.0.0.1:9/steal.ics",  # relative to the scheme only: another host
        "../private/room.ics",  # out of the base path
        "%2e%2e/private/room.ics",
    ],
)
def test_a_calendar_editor_cannot_point_a_resource_outside_the_base_uri(
    client: Client, server: Server, editor: User, address: str
) -> None:
    calendar = calendar_on(server, "room.ics")
    assert client.login(username="editor", password=TEST_PASSWORD)

    response = post_change(client, calendar, address)

    assert response.status_code == 200, "expected the form again, with the error"
    page = response.content.decode()
    assert "points outside the base URI of server published" in page
    assert "Only users who may change servers (administrators)" in page
    assert calendar.resources.get().address == "room.ics"


def test_a_calendar_editor_may_change_resources_under_the_base_uri(
    client: Client, server: Server, editor: User, origin: FakeIcsOrigin
) -> None:
    calendar = calendar_on(server, "room.ics")
    assert client.login(username="editor", password=TEST_PASSWORD)

    for address in ("other/room.ics", f"{origin.url}/published/third.ics"):
        assert post_change(client, calendar, address).status_code == 302
        assert calendar.resources.get().address == address


def test_a_calendar_editor_keeps_what_an_administrator_chose(
    client: Client, server: Server, editor: User
) -> None:
    calendar = calendar_on(server, "http://127.0.0.1:9/elsewhere.ics")
    assert client.login(username="editor", password=TEST_PASSWORD)

    data = change_form(calendar, "http://127.0.0.1:9/elsewhere.ics")
    data["label"] = "Hall"
    response = client.post(f"/admin/connector/calendar/{calendar.pk}/change/", data)

    assert response.status_code == 302
    calendar.refresh_from_db()
    assert calendar.label == "Hall"


def test_an_administrator_may_point_a_resource_anywhere(
    admin_client: Client, server: Server
) -> None:
    calendar = calendar_on(server, "room.ics")

    response = post_change(admin_client, calendar, "http://127.0.0.1:9/steal.ics")

    assert response.status_code == 302
    assert calendar.resources.get().address == "http://127.0.0.1:9/steal.ics"


# -- what counts as inside -------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://Files.Example/x", ("https", "files.example", 443)),
        ("https://files.example:443/x", ("https", "files.example", 443)),
        ("http://files.example/x", ("http", "files.example", 80)),
        ("http://[::1]:8080/", ("http", "::1", 8080)),
        ("https://a.example\\@files.example/", None),
        ("https://files.example:abc/", None),
        ("ftp://files.example/", None),
        ("/var/calendars", None),
        ("", None),
    ],
)
def test_url_origin(url: str, expected: tuple[str, str, int] | None) -> None:
    assert url_origin(url) == expected


@pytest.mark.parametrize(
    ("base_uri", "resource", "inside"),
    [
        ("https://files.example/published/", "room.ics", True),
        ("https://files.example/published", "room.ics", True),
        ("https://files.example/published/", "", True),
        ("https://files.example/published/", "https://FILES.example:443/published/a.ics", True),
        ("https://files.example/published/", "https://files.example/published/../a.ics", False),
        ("https://files.example/published/", "..\\a.ics", False),
        ("https://files.example/published/", "https://files.example/other.ics", False),
        ("https://files.example/published/", "http://files.example/published/a.ics", False),
        ("https://files.example/published/", "https://files.example:8443/published/a.ics", False),
        ("https://files.example/published/", "//evil.example/published/a.ics", False),
        ("/var/calendars", "room.ics", True),
        ("/var/calendars", "https://files.example/a.ics", False),
        ("", "https://files.example/a.ics", False),
    ],
)
def test_what_lies_under_a_base_uri(base_uri: str, resource: str, inside: bool) -> None:
    server = Server(server_id="s", type=Server.Type.ICS, base_uri=base_uri)
    assert server.contains_resource(resource) is inside
