"""Revisions and merges of configuration.xml: import_config --merge and restore_config."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from accounts.models import ServiceAccount
from connector import xmlconfig
from connector.models import Calendar, ConfigRevision, FeedFetch, Server
from connector.services import fetches
from tests.xmlconfig_helpers import (
    BASE,
    ONLY_LOBBY,
    calendar,
    configuration,
    configuration_dump,
    full_dump,
    read,
    server,
)


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_an_import_first_keeps_the_configuration_it_replaces(db: None, tmp_path: Path) -> None:
    xmlconfig.import_configuration(BASE)
    exported_before = xmlconfig.export_configuration()

    run("import_config", write(tmp_path, "only-lobby.xml", ONLY_LOBBY))

    revision = ConfigRevision.objects.order_by("-pk").first()
    assert revision is not None
    assert revision.xml == exported_before  # as export_config writes it, without secrets
    assert (revision.servers, revision.calendars, revision.credential_count) == (1, 2, 1)
    assert revision.counts == "1 server, 2 calendars, 1 credential"
    assert revision.source == "manage.py import_config"
    assert revision.reason == "import of only-lobby.xml"
    assert revision.credentials == {"hq": ["ServiceAccount", ServiceAccount.objects.get().pk]}


def test_a_revision_holds_no_password_secret_or_feed_key_in_plain_text(db: None) -> None:
    xmlconfig.import_configuration(read("secrets.xml"))
    feed_keys = list(Calendar.objects.values_list("feed_key", flat=True))

    xmlconfig.import_configuration(read("manual_5_2_label.xml"))

    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM connector_configrevision")
        stored = repr(cursor.fetchall())
    assert "visible-delegate@contoso.example" in stored  # the scan reads the rows
    for secret in (
        "fake-secret-http-password-7f3a",
        "fake-secret-client-secret-9c2e",
        "fake-secret-calendar-password-51d0",
        *feed_keys,
    ):
        assert secret not in stored
    revision = ConfigRevision.objects.order_by("-pk").first()
    assert revision is not None
    assert revision.kept_feed_keys() == dict(zip(["atrium", "boardroom"], feed_keys, strict=False))


def test_a_dry_run_an_invalid_file_or_an_import_that_changes_nothing_keeps_no_revision(
    db: None, tmp_path: Path
) -> None:
    xmlconfig.import_configuration(BASE)
    count = ConfigRevision.objects.count()

    run("import_config", "--dry-run", write(tmp_path, "c.xml", ONLY_LOBBY))
    with pytest.raises(CommandError):
        run("import_config", write(tmp_path, "bad.xml", b"<configuration>"))
    out = run("import_config", write(tmp_path, "same.xml", BASE))

    assert out.rstrip().endswith("Nothing to change.")
    assert ConfigRevision.objects.count() == count


def test_restore_brings_back_a_removed_feed_with_its_key(db: None, tmp_path: Path) -> None:
    xmlconfig.import_configuration(BASE)
    before = configuration_dump()
    hall_key = Calendar.objects.get(calendar_id="hall").feed_key
    run("import_config", write(tmp_path, "only-lobby.xml", ONLY_LOBBY))
    assert not Calendar.objects.filter(calendar_id="hall").exists()
    number = ConfigRevision.objects.order_by("-pk").values_list("pk", flat=True)[0]

    out = run("restore_config", str(number))

    assert "+ calendar hall: server hq, 1 room(s)" in out
    assert f"Restored revision {number}: 1 to add, 0 to change, 0 to remove." in out
    # The calendar's own password was not kept (a secret): the restore says so.
    assert "calendar hall: the file gives no password for hall-reader@contoso.example" in out
    hall = Calendar.objects.get(calendar_id="hall")
    assert hall.feed_key == hall_key  # players holding ?key= still get the feed
    after = configuration_dump()
    assert after["calendars"]["hall"]["password"] == ""
    after["calendars"]["hall"]["password"] = before["calendars"]["hall"]["password"]
    assert after == before
    # The restore kept the configuration it replaced: one calendar.
    newest = ConfigRevision.objects.order_by("-pk")[0]
    assert newest.pk == number + 1
    assert (newest.source, newest.reason) == (
        "manage.py restore_config",
        f"restore of revision {number}",
    )
    assert newest.calendars == 1


def test_restore_gives_each_server_back_the_credential_the_revision_names(db: None) -> None:
    # hq and annex share one account; then hq gets another password, so a new account
    # (hq-2) is made for hq, the shared one staying with annex.
    shared = configuration([server("hq"), server("annex")], [calendar("lobby")])
    xmlconfig.import_configuration(shared)
    account = Server.objects.get(server_id="hq").service_account
    xmlconfig.import_configuration(
        configuration(
            [server("hq", "fake-secret-hq-2"), server("annex")],
            [calendar("lobby")],
        )
    )
    assert Server.objects.get(server_id="hq").service_account != account
    revision = ConfigRevision.objects.order_by("-pk")[0]

    plan = xmlconfig.restore_revision(revision)

    assert [str(change) for change in plan.changes] == ["~ server hq: authentication"]
    assert Server.objects.get(server_id="hq").service_account == account


def test_restore_dry_run_prints_the_plan_and_writes_nothing(db: None, tmp_path: Path) -> None:
    xmlconfig.import_configuration(BASE)
    xmlconfig.import_configuration(ONLY_LOBBY)
    number = ConfigRevision.objects.order_by("-pk").values_list("pk", flat=True)[0]
    before = full_dump()

    out = run("restore_config", "--dry-run", str(number))

    assert "+ calendar hall: server hq, 1 room(s)" in out
    assert "Dry run: 1 to add, 0 to change, 0 to remove; nothing was written." in out
    assert full_dump() == before


def test_restore_config_list_numbers_the_revisions_newest_first(db: None, tmp_path: Path) -> None:
    run("import_config", write(tmp_path, "base.xml", BASE))
    run(
        "import_config",
        "--merge",
        write(tmp_path, "more.xml", configuration([server()], [calendar("atrium")])),
    )

    lines = run("restore_config", "--list").splitlines()

    first, second = ConfigRevision.objects.order_by("pk")
    assert len(lines) == 2
    assert lines[0].startswith(f"{second.pk:>4}  20")
    assert lines[0].endswith(
        ", before the import of more.xml (merge): 1 server, 2 calendars, 1 credential"
    )
    assert "  manage.py import_config by " in lines[0]
    assert lines[1].startswith(f"{first.pk:>4}  ")
    assert lines[1].endswith(
        ", before the import of base.xml: 0 servers, 0 calendars, 0 credentials"
    )


def test_restore_config_without_revisions_or_with_a_wrong_number(db: None) -> None:
    assert run("restore_config", "--list").startswith("No revisions yet")
    with pytest.raises(CommandError, match="There is no revision 7"):
        run("restore_config", "7")
    with pytest.raises(CommandError, match="Give a revision number"):
        run("restore_config")
    with pytest.raises(CommandError, match="not both"):
        run("restore_config", "--list", "7")


@override_settings(CONFIG_REVISIONS_KEPT=2)
def test_only_the_newest_config_revisions_kept_are_kept(db: None) -> None:
    for window in (2, 3, 4, 5):
        params = f'\n      <param name="requestWindow">{window}</param>'
        xmlconfig.import_configuration(configuration([server()], [calendar("lobby", params)]))

    kept = list(ConfigRevision.objects.order_by("pk"))

    assert len(kept) == 2
    assert ['name="requestWindow">3<' in r.xml for r in kept] == [True, False]
    assert ['name="requestWindow">4<' in r.xml for r in kept] == [False, True]


def test_merge_adds_and_changes_but_removes_nothing(db: None, tmp_path: Path) -> None:
    xmlconfig.import_configuration(
        configuration([server(), server("annex")], [calendar("lobby"), calendar("hall")])
    )
    merge = write(
        tmp_path,
        "merge.xml",
        configuration(
            [server()],
            [
                calendar("lobby", '\n      <param name="requestWindow">3</param>'),
                calendar("atrium"),
            ],
        ),
    )

    whole = run("import_config", "--dry-run", merge)
    out = run("import_config", "--merge", merge)

    assert "- calendar hall" in whole
    assert "- server annex" in whole
    assert "feed disappears: /ical/hall.ics" in whole
    assert "~ calendar lobby: requestWindow" in out
    assert "+ calendar atrium: server hq, 1 room(s)" in out
    assert "Merge: servers and calendars the file does not name are kept." in out
    assert not [line for line in out.splitlines() if line.startswith("-")]
    assert "feed disappears" not in out
    assert out.rstrip().endswith("Imported: 1 to add, 1 to change, 0 to remove.")
    assert set(Calendar.objects.values_list("calendar_id", flat=True)) == {
        "atrium",
        "hall",
        "lobby",
    }
    assert Server.objects.filter(server_id="annex").exists()
    assert Calendar.objects.get(calendar_id="lobby").request_window == 3
    assert ConfigRevision.objects.order_by("-pk")[0].reason == "import of merge.xml (merge)"


def test_a_merge_plan_is_not_the_whole_plan(db: None) -> None:
    """The admin's confirm checks the fingerprint: a merge previewed is never applied whole."""
    xmlconfig.import_configuration(BASE)
    merge = xmlconfig.import_configuration(ONLY_LOBBY, dry_run=True, merge=True)

    with pytest.raises(xmlconfig.PlanChanged):
        xmlconfig.import_configuration(ONLY_LOBBY, expected_fingerprint=merge.fingerprint())

    assert Calendar.objects.filter(calendar_id="hall").exists()


def test_the_feeds_an_import_removes_come_with_their_players_last_fetch(
    db: None, tmp_path: Path
) -> None:
    xmlconfig.import_configuration(
        configuration([server()], [calendar("lobby"), calendar("hall"), calendar("atrium")])
    )
    fetches.forget()
    assert fetches.record_fetch(
        "hall", client="10.0.0.5", path="/ical/hall.ics", user_agent="player/1", status=200
    )
    FeedFetch.objects.filter(calendar_id="hall").update(
        at=timezone.now() - dt.timedelta(minutes=2, seconds=5)
    )

    out = run("import_config", "--dry-run", write(tmp_path, "lobby.xml", ONLY_LOBBY))

    assert "feed disappears: /ical/atrium.ics: never fetched" in out
    assert (
        "feed disappears: /ical/hall.ics: players fetched /ical/hall.ics 2 minutes ago "
        "from 10.0.0.5 (status 200)"
    ) in out
    assert "/ical/lobby.ics" not in out
