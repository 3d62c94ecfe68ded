"""The calendar admin: inlines, privacy by default, secrets never shown, plain-language errors."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from accounts.models import ServiceAccount
from connector.models import Alarm, Calendar, Filter, Resource, Server
from tests.fixtures.users import TEST_PASSWORD

ADD_URL = "/admin/connector/calendar/add/"


@pytest.fixture
def server(db: None) -> Server:
    account = ServiceAccount.objects.create(
        name="delegate", username="delegate@example.com", password="fake-secret-delegate"
    )
    return Server.objects.create(
        server_id="exchange", base_uri="https://mail.example.com", service_account=account
    )


def management(prefix: str, total: int, initial: int = 0) -> dict[str, str]:
    return {
        f"{prefix}-TOTAL_FORMS": str(total),
        f"{prefix}-INITIAL_FORMS": str(initial),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }


def calendar_form(server: Server, **fields: Any) -> dict[str, Any]:
    """What a browser posts for a new calendar whose filter box was left untouched."""
    data: dict[str, Any] = {
        "calendar_id": "lobby",
        "server": str(server.pk),
        "label": "",
        "request_window": "7",
        "cache_persistence": "300",
        "timezone": "",
        "username": "",
        "password": "",
        **management("resources", 1),
        "resources-0-address": "lobby@example.com",
        "resources-0-position": "0",
        **management("filter", 1),
        "filter-0-is_cancelled": "on",
        "filter-0-mask_sensitivity": ["Personal", "Private", "Confidential"],
        "filter-0-detail_level": "full",
        "filter-0-subject": "",
        **management("alarms", 0),
    }
    data.update(fields)
    return data


def errors_of(response: Any) -> str:
    assert response.status_code == 200, "expected the form again, with errors"
    return response.content.decode()


def test_calendar_made_in_the_admin_masks_private_events_by_default(
    admin_client: Client, server: Server
) -> None:
    response = admin_client.post(ADD_URL, calendar_form(server))

    assert response.status_code == 302
    calendar = Calendar.objects.get(calendar_id="lobby")
    assert calendar.filter.mask_sensitivity == "Personal,Private,Confidential"
    assert calendar.filter.is_cancelled is True
    assert [r.address for r in calendar.resources.all()] == ["lobby@example.com"]


def test_calendar_made_in_the_admin_keeps_the_filters_entered(
    admin_client: Client, server: Server
) -> None:
    data = calendar_form(
        server,
        **{
            "filter-0-mask_sensitivity": [],
            "filter-0-sensitivity": ["Confidential", "Private"],
            "filter-0-free_busy": ["Free"],
            "filter-0-subject": "*##*",
        },
    )

    assert admin_client.post(ADD_URL, data).status_code == 302

    filters = Filter.objects.get(calendar__calendar_id="lobby")
    assert filters.mask_sensitivity == ""
    assert filters.sensitivity == "Private,Confidential"
    assert filters.free_busy == "Free"
    assert filters.subject == "*##*"


def test_add_page_shows_the_three_inlines_and_the_default_mask(
    admin_client: Client, server: Server
) -> None:
    page = admin_client.get(ADD_URL).content.decode()

    assert 'name="resources-TOTAL_FORMS"' in page
    assert 'name="filter-TOTAL_FORMS"' in page
    assert 'name="alarms-TOTAL_FORMS"' in page
    boxes = re.findall(r'<input type="checkbox" name="filter-0-mask_sensitivity"[^>]*>', page)
    checked = [re.search(r'value="(\w+)"', box).group(1) for box in boxes if "checked" in box]  # type: ignore[union-attr]
    assert checked == ["Personal", "Private", "Confidential"]
    assert re.search(r'name="filter-0-is_cancelled"[^>]*checked', page)


def test_alarms_are_saved_one_per_edge(admin_client: Client, server: Server) -> None:
    data = calendar_form(
        server,
        **management("alarms", 2),
        **{
            "alarms-0-edge": "start",
            "alarms-0-related": "event-start",
            "alarms-0-offset": "-600",
            "alarms-1-edge": "end",
            "alarms-1-related": "day-end",
            "alarms-1-offset": "0",
        },
    )

    assert admin_client.post(ADD_URL, data).status_code == 302

    assert sorted(Alarm.objects.values_list("edge", "related", "offset")) == [
        ("end", "day-end", 0),
        ("start", "event-start", -600),
    ]


def test_two_alarms_for_the_same_edge_are_refused(admin_client: Client, server: Server) -> None:
    data = calendar_form(
        server,
        **management("alarms", 2),
        **{
            "alarms-0-edge": "start",
            "alarms-0-related": "event-start",
            "alarms-0-offset": "-600",
            "alarms-1-edge": "start",
            "alarms-1-related": "day-start",
            "alarms-1-offset": "0",
        },
    )

    page = errors_of(admin_client.post(ADD_URL, data))

    assert "Please correct the duplicate data for edge" in page
    assert not Calendar.objects.exists()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"resources-0-address": "not an address"},
            "not an address is not an SMTP address (expected something like room@contoso.com).",
        ),
        (
            {"timezone": "Mars/Olympus_Mons"},
            "Mars/Olympus_Mons is not a known time zone; use an IANA name such as Europe/Paris.",
        ),
        (
            {
                **management("alarms", 1),
                "alarms-0-edge": "start",
                "alarms-0-related": "event-start",
                "alarms-0-offset": "ten minutes",
            },
            "Enter a whole number.",
        ),
        ({"request_window": "abc"}, "Enter a whole number."),
        ({"calendar_id": "hall a/b"}, "An id may contain only letters, digits"),
        (
            {"password": "fake-secret-orphan"},
            "A calendar password needs a username.",
        ),
    ],
)
def test_calendar_errors_are_explained(
    admin_client: Client, server: Server, fields: dict[str, Any], message: str
) -> None:
    page = errors_of(admin_client.post(ADD_URL, calendar_form(server, **fields)))

    assert message.replace("'", "&#x27;") in page
    assert not Calendar.objects.exists()


def test_resources_of_an_ics_server_are_urls_not_addresses(admin_client: Client, db: None) -> None:
    ics = Server.objects.create(server_id="files", type="ics", base_uri="https://files.example/")

    response = admin_client.post(
        ADD_URL, calendar_form(ics, **{"resources-0-address": "agenda/room.ics"})
    )

    assert response.status_code == 302
    assert Resource.objects.get().address == "agenda/room.ics"


def test_resources_are_listed_by_position(admin_client: Client, server: Server) -> None:
    calendar = Calendar.objects.create(calendar_id="hall", server=server)
    Resource.objects.create(calendar=calendar, address="second@example.com", position=2)
    Resource.objects.create(calendar=calendar, address="first@example.com", position=1)

    page = admin_client.get(f"/admin/connector/calendar/{calendar.pk}/change/").content.decode()

    assert page.index("first@example.com") < page.index("second@example.com")


def calendar_with_password(server: Server) -> Calendar:
    calendar = Calendar.objects.create(
        calendar_id="hall",
        server=server,
        username="reader@example.com",
        password="fake-secret-calendar-pwd",
    )
    Filter.objects.create(calendar=calendar)
    return calendar


def change_form(calendar: Calendar, **fields: Any) -> dict[str, Any]:
    filters = calendar.filter
    data = calendar_form(
        calendar.server,
        calendar_id=calendar.calendar_id,
        username=calendar.username,
        **management("resources", 0),
        **management("filter", 1, initial=1),
        **{"filter-0-id": str(filters.pk), "filter-0-calendar": str(calendar.pk)},
    )
    data.update(fields)
    return data


def test_calendar_password_is_never_shown_back(admin_client: Client, server: Server) -> None:
    calendar = calendar_with_password(server)

    page = admin_client.get(f"/admin/connector/calendar/{calendar.pk}/change/").content.decode()

    assert "fake-secret-calendar-pwd" not in page
    assert "leave empty to keep" in page.lower()


def test_empty_password_box_keeps_the_calendar_password(
    admin_client: Client, server: Server
) -> None:
    calendar = calendar_with_password(server)

    response = admin_client.post(
        f"/admin/connector/calendar/{calendar.pk}/change/", change_form(calendar, label="Hall")
    )

    assert response.status_code == 302
    calendar.refresh_from_db()
    assert calendar.label == "Hall"
    assert calendar.password == "fake-secret-calendar-pwd"


def test_new_password_replaces_the_calendar_password(admin_client: Client, server: Server) -> None:
    calendar = calendar_with_password(server)

    admin_client.post(
        f"/admin/connector/calendar/{calendar.pk}/change/",
        change_form(calendar, password="fake-secret-new-pwd"),
    )

    calendar.refresh_from_db()
    assert calendar.password == "fake-secret-new-pwd"


def test_clearing_the_username_drops_the_calendar_credentials(
    admin_client: Client, server: Server
) -> None:
    calendar = calendar_with_password(server)

    response = admin_client.post(
        f"/admin/connector/calendar/{calendar.pk}/change/", change_form(calendar, username="")
    )

    assert response.status_code == 302
    calendar.refresh_from_db()
    assert (calendar.username, calendar.password) == ("", "")


def test_changelist_searches_rooms_and_filters_by_server(
    admin_client: Client, server: Server
) -> None:
    hall = Calendar.objects.create(calendar_id="hall", server=server)
    Resource.objects.create(calendar=hall, address="big-hall@example.com")
    Calendar.objects.create(calendar_id="lobby", server=server)

    found = admin_client.get("/admin/connector/calendar/?q=big-hall").content.decode()
    by_type = admin_client.get(
        "/admin/connector/calendar/?server__type__exact=ics"
    ).content.decode()

    assert f"/admin/connector/calendar/{hall.pk}/change/" in found
    assert "lobby" not in found.split('id="result_list"')[1]
    assert "0 calendars" in by_type


def test_changelist_links_import_and_export_for_administrators(
    admin_client: Client, db: None
) -> None:
    page = admin_client.get("/admin/connector/calendar/").content.decode()

    assert 'href="/admin/connector/calendar/import/"' in page
    assert 'href="/admin/connector/calendar/export/"' in page


def test_signage_staff_see_calendars_but_neither_import_nor_export(
    staff_user: User, server: Server
) -> None:
    client = Client()
    assert client.login(username="staff", password=TEST_PASSWORD)
    Calendar.objects.create(calendar_id="hall", server=server)

    page = client.get("/admin/connector/calendar/").content.decode()

    assert "hall" in page
    assert "/admin/connector/calendar/import/" not in page
    assert "/admin/connector/calendar/export/" not in page
    assert "Export to configuration.xml" not in page
    assert client.get("/admin/accounts/serviceaccount/").status_code == 403


def test_calendar_saved_without_its_filter_form_still_gets_the_default_filters(
    admin_client: Client, server: Server
) -> None:
    data = calendar_form(server, **management("filter", 0))

    assert admin_client.post(ADD_URL, data).status_code == 302

    filters = Filter.objects.get(calendar__calendar_id="lobby")
    assert filters.mask_sensitivity == "Personal,Private,Confidential"
