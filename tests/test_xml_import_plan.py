"""What an import adds, changes and removes: the file is the whole configuration."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from accounts.models import AppRegistration, ServiceAccount
from connector import xmlconfig
from connector.models import Alarm, Calendar, Server
from tests.xmlconfig_helpers import full_dump, read


def config(servers: str, calendars: str = "") -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<fcc:configuration xmlns:fcc="urn:ews-calendar:configuration"
                   xmlns:scc="urn:ews-calendar:configuration">
  <fcc:servers>{servers}</fcc:servers>
  <fcc:calendars>{calendars}</fcc:calendars>
</fcc:configuration>""".encode()


def ews(
    server_id: str, username: str, password: str | None, base: str = "https://mail.example.com"
) -> str:
    secret = f"<scc:password>{password}</scc:password>" if password is not None else ""
    return f"""<scc:server id="{server_id}" type="ews"><scc:baseuri>{base}</scc:baseuri>
      <scc:authentication type="http-authentication"><scc:credentials>
        <scc:username>{username}</scc:username>{secret}
      </scc:credentials></scc:authentication></scc:server>"""


def graph(server_id: str, secret: str | None, expires: str = "2027-05-01") -> str:
    element = (
        f'<scc:clientsecret expires="{expires}">{secret}</scc:clientsecret>'
        if secret is not None
        else ""
    )
    return f"""<scc:server id="{server_id}" type="graph">
      <scc:authentication type="oauth2-client-credentials">
        <scc:tenant>contoso.onmicrosoft.com</scc:tenant>
        <scc:clientid>11111111-1111-1111-1111-111111111111</scc:clientid>{element}
      </scc:authentication></scc:server>"""


def calendar(calendar_id: str, server_id: str, *params: str) -> str:
    body = "".join(params)
    return f'<scc:calendar id="{calendar_id}" server="url(#{server_id})">{body}</scc:calendar>'


def param(name: str, value: str) -> str:
    return f'<param name="{name}">{value}</param>'


def test_plan_lists_what_is_added_changed_and_removed(db: None) -> None:
    xmlconfig.import_configuration(read("spec_example.xml"))
    data = config(
        ews("serverId", "delegate@exchange2007.innes.fr", "pwd", "https://192.168.0.47")
        + ews("new-server", "other@example.com", "fake-secret-new"),
        calendar("room", "serverId", param("resource", "room@exchange2007.innes.fr"))
        + calendar("hall", "new-server", param("resource", "hall@example.com")),
    )

    plan = xmlconfig.import_configuration(data, dry_run=True)

    assert plan.lines() == [
        "+ service account new-server: other@example.com",
        "~ server serverId: label, scheme",
        "+ server new-server: ews, https://mail.example.com",
        "- server o365",
        "~ calendar room: resource",
        "+ calendar hall: server new-server, 1 room(s)",
    ]
    assert plan.summary() == "3 to add, 2 to change, 1 to remove"


def test_dry_run_writes_nothing(db: None) -> None:
    xmlconfig.import_configuration(read("spec_example.xml"))
    before = full_dump()

    plan = xmlconfig.import_configuration(read("extensions_every_param.xml"), dry_run=True)

    assert plan.added and plan.removed
    assert full_dump() == before


def test_import_removes_calendars_and_servers_the_file_does_not_name(db: None) -> None:
    xmlconfig.import_configuration(read("extensions_every_param.xml"))

    plan = xmlconfig.import_configuration(read("manual_5_2_label.xml"))

    assert {change.name for change in plan.removed} == {
        "onprem",
        "graph",
        "delegated",
        "published",
        "hall-a",
        "board.room",
        "lobby",
        "canteen",
    }
    assert list(Server.objects.values_list("server_id", flat=True)) == ["serverId"]
    assert list(Calendar.objects.values_list("calendar_id", flat=True)) == ["room"]
    # Credentials are kept: an app registration holds a sign-in that is costly to redo.
    assert AppRegistration.objects.count() == 2


def test_password_left_out_keeps_the_stored_one(db: None) -> None:
    xmlconfig.import_configuration(
        config(
            ews("s", "delegate@example.com", "fake-secret-stored") + graph("g", "fake-secret-app"),
            calendar(
                "c",
                "s",
                param("username", "reader@example.com"),
                param("password", "fake-secret-calendar"),
            ),
        )
    )

    plan = xmlconfig.import_configuration(
        config(
            ews("s", "delegate@example.com", None) + graph("g", None),
            calendar("c", "s", param("username", "reader@example.com")),
        )
    )

    assert plan.is_empty, plan.lines()
    assert ServiceAccount.objects.get().password == "fake-secret-stored"
    app = AppRegistration.objects.get()
    assert app.client_secret == "fake-secret-app"
    assert app.secret_expires == dt.date(2027, 5, 1)  # no <clientsecret> at all: kept too
    assert Calendar.objects.get().password == "fake-secret-calendar"


def test_empty_clientsecret_with_expiry_keeps_the_secret_and_updates_the_date(db: None) -> None:
    xmlconfig.import_configuration(config(graph("g", "fake-secret-app", "2027-05-01")))

    plan = xmlconfig.import_configuration(config(graph("g", "", "2028-01-31")))

    assert plan.lines() == ["~ app registration g: secret expiry"]
    app = AppRegistration.objects.get()
    assert app.client_secret == "fake-secret-app"
    assert app.secret_expires == dt.date(2028, 1, 31)


def test_new_password_updates_the_account_of_this_server_in_place(db: None) -> None:
    xmlconfig.import_configuration(config(ews("s", "delegate@example.com", "fake-secret-old")))
    account = ServiceAccount.objects.get()

    plan = xmlconfig.import_configuration(
        config(ews("s", "delegate@example.com", "fake-secret-new"))
    )

    assert plan.lines() == ["~ service account s: password"]
    account.refresh_from_db()
    assert account.password == "fake-secret-new"
    assert ServiceAccount.objects.count() == 1


def test_new_password_for_a_shared_account_makes_a_new_account(db: None) -> None:
    shared = ServiceAccount.objects.create(
        name="shared", username="delegate@example.com", password="fake-secret-shared"
    )
    Server.objects.create(server_id="a", base_uri="https://a.example", service_account=shared)
    Server.objects.create(server_id="b", base_uri="https://b.example", service_account=shared)

    xmlconfig.import_configuration(
        config(
            ews("a", "delegate@example.com", "fake-secret-other", "https://a.example")
            + ews("b", "delegate@example.com", None, "https://b.example")
        )
    )

    shared.refresh_from_db()
    assert shared.password == "fake-secret-shared"
    assert Server.objects.get(server_id="b").service_account == shared
    moved = Server.objects.get(server_id="a").service_account
    assert moved is not None and moved != shared
    assert (moved.name, moved.password) == ("a", "fake-secret-other")


def test_existing_credential_with_the_same_content_is_reused_whatever_its_name(db: None) -> None:
    account = ServiceAccount.objects.create(
        name="made-in-the-admin", username="delegate@example.com", password="fake-secret-same"
    )

    plan = xmlconfig.import_configuration(
        config(ews("s", "delegate@example.com", "fake-secret-same"))
    )

    assert [str(change) for change in plan.added] == ["+ server s: ews, https://mail.example.com"]
    assert Server.objects.get().service_account == account


def test_new_credential_name_avoids_an_existing_name(db: None) -> None:
    ServiceAccount.objects.create(name="s", username="someone-else@example.com", password="x")

    xmlconfig.import_configuration(config(ews("s", "delegate@example.com", "fake-secret-s")))

    assert Server.objects.get().service_account.name == "s-2"  # type: ignore[union-attr]


def test_new_client_secret_forgets_that_the_old_one_expired(db: None) -> None:
    xmlconfig.import_configuration(config(graph("g", "fake-secret-expired", "2020-01-01")))
    AppRegistration.objects.update(secret_expired_at=timezone.now(), expiry_notified_days=7)

    plan = xmlconfig.import_configuration(config(graph("g", "fake-secret-fresh", "2028-01-01")))

    assert plan.lines() == ["~ app registration g: client secret, secret expiry"]
    app = AppRegistration.objects.get()
    assert app.client_secret == "fake-secret-fresh"
    assert (app.secret_expired_at, app.expiry_notified_days) == (None, None)
    assert app.expiry_status(dt.date(2027, 1, 1)) == "ok"


def test_new_endpoint_forgets_what_the_old_one_taught(db: None) -> None:
    xmlconfig.import_configuration(config(ews("s", "d@example.com", "fake-secret-e")))
    Server.objects.update(
        ews_version="Exchange2016", ews_endpoint="https://mail.example.com/EWS/Exchange.asmx"
    )

    xmlconfig.import_configuration(
        config(ews("s", "d@example.com", None, "https://new.example.com"))
    )

    server = Server.objects.get()
    assert (server.base_uri, server.ews_version, server.ews_endpoint) == (
        "https://new.example.com",
        "",
        "",
    )


def test_calendar_changes_follow_the_file_resources_filters_and_alarms(db: None) -> None:
    xmlconfig.import_configuration(read("manual_5_2_hide_10_minutes_after.xml"))
    room = Calendar.objects.get()
    feed_key = room.feed_key

    plan = xmlconfig.import_configuration(
        config(
            ews(
                "serverId",
                "delegate@exchange2007.innes.fr",
                "fake-secret-manual-pwd",
                "https://192.168.0.47",
            ),
            calendar(
                "room",
                "serverId",
                param("resource", "demo@exchange2007.innes.fr"),
                param("resource", "room@exchange2007.innes.fr"),
                param("endRelated", "day-end"),
                param("maskSensitivity", "Private"),
            ),
        )
    )

    assert [str(change) for change in plan.changed] == [
        "~ server serverId: label",
        "~ calendar room: resource, maskSensitivity, startRelated/startOffset, "
        "endRelated/endOffset",
    ]
    room = Calendar.objects.get()
    assert [r.address for r in room.resources.all()] == [
        "demo@exchange2007.innes.fr",
        "room@exchange2007.innes.fr",
    ]
    assert room.filter.mask_sensitivity == "Private"
    assert list(room.alarms.values_list("edge", "related", "offset")) == [("end", "day-end", 0)]
    assert room.feed_key == feed_key  # kept when the file names none


def test_new_calendars_get_a_random_feed_key_unless_the_file_gives_one(db: None) -> None:
    xmlconfig.import_configuration(read("extensions_every_param.xml"))

    keys = dict(Calendar.objects.values_list("calendar_id", "feed_key"))

    assert keys["hall-a"] == "fake-secret-feed-key-0123456789"
    assert len(keys["lobby"]) >= 24 and keys["lobby"] != keys["canteen"]


def test_alarm_rows_exist_only_for_edges_the_file_names(db: None) -> None:
    xmlconfig.import_configuration(read("manual_5_2_display_10_minutes_before.xml"))

    assert list(Alarm.objects.values_list("edge", "related", "offset")) == [
        ("start", "event-start", -600)
    ]
