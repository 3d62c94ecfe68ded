"""The admin's merge upload, the feeds a preview shows disappearing, and the revision pages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings

from connector import xmlconfig
from connector.admin.configuration import SESSION_KEY
from connector.models import Calendar, ConfigRevision, Server
from connector.services import fetches
from tests.fixtures.users import TEST_PASSWORD
from tests.xmlconfig_helpers import BASE, ONLY_LOBBY, calendar, configuration, full_dump, server

IMPORT_URL = "/admin/connector/calendar/import/"
CONFIRM_URL = "/admin/connector/calendar/import/confirm/"
REVISIONS_URL = "/admin/connector/calendar/revisions/"


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path) -> Path:
    with override_settings(DATA_DIR=tmp_path):
        yield tmp_path


def upload(client: Client, data: bytes, *, merge: bool = False, name: str = "c.xml") -> str:
    fields: dict[str, object] = {"file": SimpleUploadedFile(name, data)}
    if merge:
        fields["merge"] = "on"
    response = client.post(IMPORT_URL, fields)
    assert response.status_code == 200
    return response.content.decode()


def disappearing(page: str) -> list[str]:
    block = re.search(r'<ul class="xmlconfig-disappearing">(.*?)</ul>', page, re.S)
    if block is None:
        return []
    return [re.sub(r"<[^>]+>", "", item) for item in re.findall(r"<li.*?</li>", block[1], re.S)]


def newest_revision() -> ConfigRevision:
    revision = ConfigRevision.objects.order_by("-pk").first()
    assert revision is not None
    return revision


def test_the_upload_form_offers_a_merge(admin_client: Client, db: None) -> None:
    page = admin_client.get(IMPORT_URL).content.decode()

    assert '<input type="checkbox" name="merge"' in page
    assert "remove no server or calendar it leaves out" in page
    assert f'href="{REVISIONS_URL}"' in page


def test_the_preview_shows_each_feed_that_disappears_with_its_last_fetch(
    admin_client: Client, db: None
) -> None:
    xmlconfig.import_configuration(BASE)
    fetches.forget()
    fetches.record_fetch(
        "hall", client="10.0.0.7", path="/ical/hall.ics", user_agent="player/2", status=200
    )

    page = upload(admin_client, ONLY_LOBBY)

    assert "1 feed will disappear" in page
    assert disappearing(page) == [
        "/ical/hall.ics: players fetched /ical/hall.ics just now from 10.0.0.7 (status 200)"
    ]
    assert 'class="xmlconfig-disappearing-block" role="alert"' in page


def test_a_feed_nobody_fetched_says_never_fetched(admin_client: Client, db: None) -> None:
    xmlconfig.import_configuration(BASE)

    page = upload(admin_client, ONLY_LOBBY)

    assert disappearing(page) == ["/ical/hall.ics: never fetched"]


def test_a_merge_preview_removes_nothing_and_its_confirm_keeps_everything(
    admin_client: Client, db: None
) -> None:
    xmlconfig.import_configuration(BASE)
    merge = configuration([server()], [calendar("atrium")])

    page = upload(admin_client, merge, merge=True, name="atrium.xml")
    assert "1 to add, 0 to change, 0 to remove" in page
    assert "Merge: servers and calendars the file does not name are kept" in page
    assert disappearing(page) == []
    assert "<h2>Removed</h2>" not in page
    token = str(admin_client.session[SESSION_KEY]["token"])
    response = admin_client.post(CONFIRM_URL, {"token": token}, follow=True)

    assert "Imported atrium.xml: 1 to add, 0 to change, 0 to remove." in (response.content.decode())
    assert set(Calendar.objects.values_list("calendar_id", flat=True)) == {
        "atrium",
        "hall",
        "lobby",
    }
    revision = newest_revision()
    assert (revision.source, revision.by, revision.reason) == (
        "admin upload",
        "admin",
        "import of atrium.xml (merge)",
    )
    assert f"kept as revision {revision.pk}" in response.content.decode()


def test_revisions_are_listed_newest_first_with_download_and_restore(
    admin_client: Client, db: None
) -> None:
    xmlconfig.import_configuration(BASE, origin=xmlconfig.Origin("manage.py import_config"))
    xmlconfig.import_configuration(
        ONLY_LOBBY, origin=xmlconfig.Origin("admin upload", "alice", "import of lobby.xml")
    )
    first, second = ConfigRevision.objects.order_by("pk")

    page = admin_client.get(REVISIONS_URL).content.decode()

    rows = re.findall(r'<tr data-revision="(\d+)">(.*?)</tr>', page, re.S)
    assert [int(number) for number, _ in rows] == [second.pk, first.pk]
    newest = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", rows[0][1]))
    assert "admin upload (alice)" in newest
    assert "the import of lobby.xml" in newest
    assert "1 server, 2 calendars, 1 credential" in newest
    assert f"{REVISIONS_URL}{second.pk}/download/" in rows[0][1]
    assert f"{REVISIONS_URL}{second.pk}/restore/" in rows[0][1]


def test_a_revision_downloads_as_the_export_without_secrets(admin_client: Client, db: None) -> None:
    xmlconfig.import_configuration(BASE)
    exported = xmlconfig.export_configuration()
    xmlconfig.import_configuration(ONLY_LOBBY)
    revision = newest_revision()

    response = admin_client.get(f"{REVISIONS_URL}{revision.pk}/download/")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/xml; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="configuration-revision-{revision.pk}.xml"'
    )
    assert response.content.decode() == exported
    assert b"fake-secret" not in response.content
    assert admin_client.get(f"{REVISIONS_URL}999/download/").status_code == 404


def test_restore_shows_the_import_preview_and_changes_nothing(
    admin_client: Client, db: None
) -> None:
    xmlconfig.import_configuration(BASE)
    xmlconfig.import_configuration(configuration([server()], [calendar("lobby"), calendar("new")]))
    revision = newest_revision()
    before = full_dump()

    page = admin_client.get(f"{REVISIONS_URL}{revision.pk}/restore/").content.decode()

    assert f"Revision <strong>{revision.pk}</strong> is the configuration of" in page
    assert "1 to add, 0 to change, 1 to remove" in page
    assert "calendar <strong>hall</strong>" in page
    assert disappearing(page) == ["/ical/new.ics: never fetched"]
    assert 'value="Restore"' in page
    assert full_dump() == before


def test_confirming_a_restore_brings_the_revision_back_and_keeps_a_revision_first(
    admin_client: Client, db: None
) -> None:
    xmlconfig.import_configuration(BASE)
    hall_key = Calendar.objects.get(calendar_id="hall").feed_key
    xmlconfig.import_configuration(ONLY_LOBBY)
    revision = newest_revision()
    page = admin_client.get(f"{REVISIONS_URL}{revision.pk}/restore/").content.decode()
    fingerprint = re.search(r'name="fingerprint" value="([0-9a-f]+)"', page)
    assert fingerprint is not None

    response = admin_client.post(
        f"{REVISIONS_URL}{revision.pk}/restore/",
        {"fingerprint": fingerprint[1], "confirm": "Restore"},
        follow=True,
    )

    text = response.content.decode()
    assert response.redirect_chain[-1][0] == "/admin/connector/calendar/"
    assert f"Restored revision {revision.pk}: 1 to add, 0 to change, 0 to remove." in text
    assert Calendar.objects.get(calendar_id="hall").feed_key == hall_key
    kept = newest_revision()
    assert kept.pk == revision.pk + 1
    assert (kept.source, kept.by, kept.reason) == (
        "admin restore",
        "admin",
        f"restore of revision {revision.pk}",
    )
    assert kept.calendars == 1


def test_a_restore_whose_plan_changed_since_the_preview_shows_the_new_plan(
    admin_client: Client, db: None
) -> None:
    xmlconfig.import_configuration(BASE)
    xmlconfig.import_configuration(ONLY_LOBBY)
    revision = newest_revision()
    page = admin_client.get(f"{REVISIONS_URL}{revision.pk}/restore/").content.decode()
    fingerprint = re.search(r'name="fingerprint" value="([0-9a-f]+)"', page)
    assert fingerprint is not None
    # Meanwhile, someone adds a calendar: restoring would now remove it too.
    xmlconfig.import_configuration(configuration([server()], [calendar("atrium")]), merge=True)
    before = full_dump()

    response = admin_client.post(
        f"{REVISIONS_URL}{revision.pk}/restore/", {"fingerprint": fingerprint[1]}
    )

    text = response.content.decode()
    assert response.status_code == 200
    assert "The configuration changed since the preview; check it again." in text
    assert disappearing(text) == ["/ical/atrium.ics: never fetched"]
    assert full_dump() == before


def test_cancelling_a_restore_changes_nothing(admin_client: Client, db: None) -> None:
    xmlconfig.import_configuration(BASE)
    xmlconfig.import_configuration(ONLY_LOBBY)
    revision = newest_revision()
    before = full_dump()

    response = admin_client.post(
        f"{REVISIONS_URL}{revision.pk}/restore/", {"cancel": "Cancel"}, follow=True
    )

    assert response.redirect_chain[-1][0] == REVISIONS_URL
    assert "Restore cancelled; nothing was changed." in response.content.decode()
    assert full_dump() == before


def test_who_may_list_download_and_restore_revisions(staff_user: User, db: None) -> None:
    xmlconfig.import_configuration(BASE)
    xmlconfig.import_configuration(ONLY_LOBBY)
    number = newest_revision().pk
    staff = Client()
    assert staff.login(username="staff", password=TEST_PASSWORD)
    viewer = User.objects.create_user("viewer", password=TEST_PASSWORD, is_staff=True)
    viewer.user_permissions.set(
        Permission.objects.filter(
            codename__in=[
                "view_calendar",
                "view_server",
                "view_serviceaccount",
                "view_appregistration",
            ]
        )
    )
    reader = Client()
    reader.force_login(viewer)

    # Signage staff: none of it.
    assert staff.get(REVISIONS_URL).status_code == 403
    assert staff.get(f"{REVISIONS_URL}{number}/download/").status_code == 403
    assert staff.get(f"{REVISIONS_URL}{number}/restore/").status_code == 403
    # Who may export may list and download, not restore.
    listing = reader.get(REVISIONS_URL)
    assert listing.status_code == 200
    assert "Restore…" not in listing.content.decode()
    assert reader.get(f"{REVISIONS_URL}{number}/download/").status_code == 200
    assert reader.get(f"{REVISIONS_URL}{number}/restore/").status_code == 403
    assert reader.post(f"{REVISIONS_URL}{number}/restore/", {"fingerprint": "x"}).status_code == 403
    assert not Calendar.objects.filter(calendar_id="hall").exists()
    assert Server.objects.count() == 1
