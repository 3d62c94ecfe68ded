"""The admin's import (upload → preview → confirm) and export of configuration.xml."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings

from connector import xmlconfig
from connector.admin.configuration import SESSION_KEY
from connector.models import Calendar, Server
from tests.fixtures.users import TEST_PASSWORD
from tests.xmlconfig_helpers import configuration_dump, full_dump, read

IMPORT_URL = "/admin/connector/calendar/import/"
CONFIRM_URL = "/admin/connector/calendar/import/confirm/"
EXPORT_URL = "/admin/connector/calendar/export/"


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path) -> Path:
    with override_settings(DATA_DIR=tmp_path):
        yield tmp_path


def upload(client: Client, name: str, content: bytes | None = None) -> str:
    data = read(name) if content is None else content
    response = client.post(IMPORT_URL, {"file": SimpleUploadedFile(name, data)})
    assert response.status_code == 200
    return response.content.decode()


def token_of(client: Client) -> str:
    return str(client.session[SESSION_KEY]["token"])


def test_upload_shows_a_preview_and_changes_nothing(admin_client: Client, db: None) -> None:
    before = full_dump()

    page = upload(admin_client, "spec_example.xml")

    assert "<strong>spec_example.xml</strong> is valid" in page
    assert "5 to add, 0 to change, 0 to remove" in page
    assert "calendar <strong>room</strong> (server serverId, 2 room(s))" in page
    assert "service account <strong>serverId</strong>" in page
    assert "switches off for good on 1 April 2027" in page  # the o365 server's warning
    assert full_dump() == before


def test_confirm_imports_the_previewed_file(admin_client: Client, data_dir: Path) -> None:
    upload(admin_client, "spec_example.xml")

    response = admin_client.post(CONFIRM_URL, {"token": token_of(admin_client)}, follow=True)

    assert response.redirect_chain[-1][0] == "/admin/connector/calendar/"
    assert "Imported spec_example.xml: 5 to add, 0 to change, 0 to remove." in (
        response.content.decode()
    )
    assert Calendar.objects.get().calendar_id == "room"
    assert list((data_dir / "imports").iterdir()) == []  # the waiting copy is gone
    assert SESSION_KEY not in admin_client.session


def test_waiting_upload_is_encrypted_on_disk(admin_client: Client, data_dir: Path) -> None:
    upload(admin_client, "extensions_every_param.xml")

    (waiting,) = (data_dir / "imports").iterdir()

    assert b"fake-secret" not in waiting.read_bytes()
    assert b"configuration" not in waiting.read_bytes()
    assert oct(waiting.stat().st_mode & 0o777) == "0o600"


def test_confirm_never_trusts_a_new_upload(admin_client: Client, db: None) -> None:
    upload(admin_client, "manual_5_2_label.xml")

    admin_client.post(
        CONFIRM_URL,
        {
            "token": token_of(admin_client),
            "file": SimpleUploadedFile("other.xml", read("extensions_every_param.xml")),
        },
    )

    assert list(Calendar.objects.values_list("calendar_id", "label")) == [("room", "My Room")]


def test_confirm_with_an_unknown_token_imports_nothing(admin_client: Client, db: None) -> None:
    upload(admin_client, "spec_example.xml")

    response = admin_client.post(CONFIRM_URL, {"token": "forged"}, follow=True)

    assert "That upload is no longer waiting" in response.content.decode()
    assert not Server.objects.exists()


def test_an_upload_is_confirmed_once(admin_client: Client, db: None) -> None:
    upload(admin_client, "spec_example.xml")
    token = token_of(admin_client)

    first = admin_client.post(CONFIRM_URL, {"token": token}, follow=True)

    # The first confirm imported the file: its servers, credentials and calendar.
    assert "Imported spec_example.xml: 5 to add" in first.content.decode()
    imported = configuration_dump()
    assert imported["servers"] == {
        "serverId": {
            "type": "ews",
            "base_uri": "https://192.168.0.47",
            "label": "Mon serveur Exchange 2007/2010",
            "autodiscover": "",
            "http_scheme": "basic",
            "credential": {
                "kind": "service account",
                "name": "serverId",
                "username": "delegate@exchange2007.innes.fr",
                "password": "pwd",
            },
        },
        "o365": {
            "type": "ews",
            "base_uri": "https://outlook.office365.com",
            "label": "Exchange Online",
            "autodiscover": "",
            "http_scheme": "ntlm",
            "credential": {
                "kind": "app registration",
                "name": "o365",
                "flow": "client_credentials",
                "tenant": "contoso.onmicrosoft.com",
                "client_id": "00000000-0000-0000-0000-000000000000",
                "client_secret": "secret-value",
                "secret_expires": dt.date(2027, 5, 1),
                "authority": "https://login.microsoftonline.com",
                "account": "",
            },
        },
    }
    (room,) = imported["calendars"].items()
    assert room[0] == "room"
    assert (room[1]["server"], room[1]["request_window"], room[1]["resources"]) == (
        "serverId",
        7,
        [("room@exchange2007.innes.fr", 0), ("demo@exchange2007.innes.fr", 1)],
    )
    # Without its calendar, a second import of the same file would have work to do.
    Calendar.objects.all().delete()
    before = full_dump()

    second = admin_client.post(CONFIRM_URL, {"token": token}, follow=True)

    assert second.redirect_chain == [(IMPORT_URL, 302)]
    assert (
        "That upload is no longer waiting (expired or already imported); upload it again."
        in second.content.decode()
    )
    assert full_dump() == before
    assert not Calendar.objects.exists()


def test_another_session_cannot_confirm_my_upload(
    admin_client: Client, admin_user: User, db: None
) -> None:
    upload(admin_client, "spec_example.xml")
    token = token_of(admin_client)
    other = Client()
    other.force_login(admin_user)

    other.post(CONFIRM_URL, {"token": token})

    assert not Server.objects.exists()


def test_cancel_drops_the_upload(admin_client: Client, data_dir: Path) -> None:
    upload(admin_client, "spec_example.xml")

    response = admin_client.post(
        CONFIRM_URL, {"token": token_of(admin_client), "cancel": "Cancel"}, follow=True
    )

    assert "Import cancelled; nothing was changed." in response.content.decode()
    assert list((data_dir / "imports").iterdir()) == []
    assert not Server.objects.exists()


def test_preview_that_went_stale_is_shown_again_before_anything_is_written(
    admin_client: Client, db: None
) -> None:
    upload(admin_client, "manual_5_2_label.xml")
    token = token_of(admin_client)
    xmlconfig.import_configuration(read("manual_5_2_cache_persistence.xml"))  # meanwhile

    stale = admin_client.post(CONFIRM_URL, {"token": token})

    assert stale.status_code == 200
    page = stale.content.decode()
    assert "The configuration changed since the preview; check it again." in page
    assert "calendar <strong>room</strong>: cachePersistence, label" in page
    assert Calendar.objects.get().label == ""

    admin_client.post(CONFIRM_URL, {"token": token})

    room = Calendar.objects.get()
    assert (room.label, room.cache_persistence) == ("My Room", 300)


def test_invalid_upload_lists_every_problem_and_changes_nothing(
    admin_client: Client, db: None
) -> None:
    xmlconfig.import_configuration(read("spec_example.xml"))
    before = full_dump()

    page = upload(admin_client, "invalid_many_problems.xml")

    assert "The file was not imported; nothing was changed. Fix 12 problems" in page
    assert (
        "<li>line 26: calendar &#x27;room&#x27;: requestWindow: &#x27;abc&#x27; is not a whole"
        in (page)
    )
    assert full_dump() == before
    assert SESSION_KEY not in admin_client.session


@override_settings(CONFIG_MAX_BYTES=1000)
def test_upload_over_the_size_limit_is_refused(admin_client: Client, db: None) -> None:
    page = upload(admin_client, "big.xml", b"<configuration>" + b" " * 5000 + b"</configuration>")

    assert "line 1: the file is 1,001 bytes, over the limit of 1,000 bytes" in page


def test_signage_staff_may_neither_import_nor_export(staff_user: User) -> None:
    client = Client()
    assert client.login(username="staff", password=TEST_PASSWORD)

    assert client.get(IMPORT_URL).status_code == 403
    assert client.post(CONFIRM_URL, {"token": "x"}).status_code == 403
    assert client.get(EXPORT_URL).status_code == 403


def test_staff_with_every_configuration_permission_may_import_but_not_export_secrets(
    db: None,
) -> None:
    user = User.objects.create_user("editor", password=TEST_PASSWORD, is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label__in=["connector", "accounts"],
            content_type__model__in=["calendar", "server", "serviceaccount", "appregistration"],
        )
    )
    client = Client()
    client.force_login(user)

    upload(client, "spec_example.xml")
    client.post(CONFIRM_URL, {"token": token_of(client)})

    assert Calendar.objects.exists()
    assert client.get(EXPORT_URL).status_code == 200
    assert client.get(EXPORT_URL + "?secrets=1").status_code == 403


def test_export_download_leaves_secrets_out(admin_client: Client, db: None) -> None:
    xmlconfig.import_configuration(read("extensions_every_param.xml"))

    response = admin_client.get(EXPORT_URL)

    assert response["Content-Disposition"] == 'attachment; filename="configuration.xml"'
    assert response["Content-Type"] == "application/xml; charset=utf-8"
    assert response.content.decode() == xmlconfig.export_configuration()
    assert b"fake-secret" not in response.content


def test_export_with_secrets_for_administrators(admin_client: Client, db: None) -> None:
    xmlconfig.import_configuration(read("extensions_every_param.xml"))

    response = admin_client.get(EXPORT_URL + "?secrets=1")

    assert b"fake-secret-graph-client" in response.content
    assert "no-store" in response["Cache-Control"]


def test_export_action_writes_the_selected_calendars_and_their_servers(
    admin_client: Client, db: None
) -> None:
    xmlconfig.import_configuration(read("extensions_every_param.xml"))
    chosen = Calendar.objects.filter(calendar_id__in=["hall-a", "canteen"])

    response = admin_client.post(
        "/admin/connector/calendar/",
        {"action": "export_selected", "_selected_action": [c.pk for c in chosen]},
    )

    text = response.content.decode()
    assert response["Content-Disposition"] == 'attachment; filename="configuration.xml"'
    assert '<scc:calendar id="hall-a"' in text and '<scc:calendar id="canteen"' in text
    assert '<scc:calendar id="lobby"' not in text
    assert '<scc:server id="onprem"' in text and '<scc:server id="published"' in text
    assert '<scc:server id="graph"' not in text
    assert "fake-secret" not in text
