"""Every configuration.xml example of the SPEC and of the PHP connector's manual imports."""

from __future__ import annotations

import datetime as dt

import pytest

from accounts.models import AppRegistration, ServiceAccount
from connector import xmlconfig
from connector.models import Alarm, Calendar, Server
from tests.xmlconfig_helpers import DATA, read

EXAMPLES = sorted(
    path.name
    for path in DATA.glob("*.xml")
    if path.name.startswith(("spec_", "manual_", "extensions_", "real_world_", "undeclared_"))
)


def test_the_examples_are_all_there() -> None:
    # The SPEC's example, 3 server and 11 calendar examples of the manual, ours.
    assert len([name for name in EXAMPLES if name.startswith("manual_5_1")]) == 3
    assert len([name for name in EXAMPLES if name.startswith("manual_5_2")]) == 11
    assert "spec_example.xml" in EXAMPLES


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_imports_into_an_empty_database(db: None, name: str) -> None:
    plan = xmlconfig.import_configuration(read(name))

    assert plan.added
    assert not plan.removed
    assert Server.objects.exists()


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_imported_twice_changes_nothing_the_second_time(db: None, name: str) -> None:
    xmlconfig.import_configuration(read(name))

    again = xmlconfig.import_configuration(read(name), dry_run=True)

    assert again.is_empty, again.lines()


def test_spec_example_gives_two_servers_with_their_credentials(db: None) -> None:
    xmlconfig.import_configuration(read("spec_example.xml"))

    onprem = Server.objects.get(server_id="serverId")
    assert onprem.type == "ews"
    assert onprem.base_uri == "https://192.168.0.47"
    assert onprem.label == "Mon serveur Exchange 2007/2010"
    assert onprem.http_scheme == "basic"
    assert onprem.service_account is not None
    assert onprem.service_account.username == "delegate@exchange2007.innes.fr"
    assert onprem.service_account.password == "pwd"
    assert onprem.service_account.name == "serverId"  # named after the server

    online = Server.objects.get(server_id="o365")
    app = online.app_registration
    assert app is not None
    assert app.flow == AppRegistration.Flow.CLIENT_CREDENTIALS
    assert app.tenant == "contoso.onmicrosoft.com"
    assert app.client_id == "00000000-0000-0000-0000-000000000000"
    assert app.client_secret == "secret-value"
    assert app.secret_expires == dt.date(2027, 5, 1)
    assert app.authority == "https://login.microsoftonline.com"
    assert online.points_at_exchange_online_ews

    room = Calendar.objects.get(calendar_id="room")
    assert room.server == onprem
    assert [r.address for r in room.resources.all()] == [
        "room@exchange2007.innes.fr",
        "demo@exchange2007.innes.fr",
    ]
    assert room.request_window == 7


def test_spec_example_warns_that_ews_in_exchange_online_ends(db: None) -> None:
    plan = xmlconfig.import_configuration(read("spec_example.xml"), dry_run=True)

    assert any("o365" in warning and "1 April 2027" in warning for warning in plan.warnings)


@pytest.mark.parametrize(
    ("name", "username", "scheme"),
    [
        ("manual_5_1_server.xml", "delegate@exchange2007.innes.fr", "ntlm"),
        ("manual_5_1_server_local_domain.xml", "delegate@exchange2007.innes.local", "ntlm"),
        ("manual_5_1_server_basic.xml", "delegate@exchange2007.innes.local", "basic"),
    ],
)
def test_manual_server_examples(db: None, name: str, username: str, scheme: str) -> None:
    xmlconfig.import_configuration(read(name))

    server = Server.objects.get(server_id="serverId")
    assert server.http_scheme == scheme  # ntlm when the file names no scheme
    assert server.service_account is not None
    assert server.service_account.username == username
    assert server.service_account.password == "pwd"
    assert server.ews_url() == "https://192.168.0.47/EWS/Exchange.asmx"


def _room(calendar_id: str = "room") -> Calendar:
    return Calendar.objects.select_related("filter").get(calendar_id=calendar_id)


def _alarms(calendar: Calendar) -> dict[str, tuple[str, int]]:
    return {alarm.edge: (alarm.related, alarm.offset) for alarm in calendar.alarms.all()}


def test_manual_resource_example(db: None) -> None:
    xmlconfig.import_configuration(read("manual_5_2_resource.xml"))

    room = _room()
    assert [r.address for r in room.resources.all()] == ["room@exchange2007.innes.fr"]
    assert (room.request_window, room.cache_persistence) == (7, 300)
    assert room.send_cache_on_server_error is False
    assert room.filter.is_cancelled is True
    assert _alarms(room) == {}


def test_manual_multiple_resources_example_keeps_their_order(db: None) -> None:
    xmlconfig.import_configuration(read("manual_5_2_multiple_resources.xml"))

    calendar = _room("all")
    assert [(r.address, r.position) for r in calendar.resources.all()] == [
        ("room@exchange2007.innes.fr", 0),
        ("demo@exchange2007.innes.fr", 1),
    ]


def test_manual_request_window_example_lowercase_param(db: None) -> None:
    xmlconfig.import_configuration(read("manual_5_2_request_window.xml"))

    assert _room().request_window == 2


def test_manual_cache_persistence_example(db: None) -> None:
    xmlconfig.import_configuration(read("manual_5_2_cache_persistence.xml"))

    assert _room().cache_persistence == 0


def test_manual_label_example(db: None) -> None:
    xmlconfig.import_configuration(read("manual_5_2_label.xml"))

    assert _room().label == "My Room"


@pytest.mark.parametrize(
    ("name", "alarms"),
    [
        ("manual_5_2_display_10_minutes_before.xml", {"start": ("event-start", -600)}),
        ("manual_5_2_current_and_future_day.xml", {"start": ("day-start", 0)}),
        (
            "manual_5_2_hide_10_minutes_after.xml",
            {"start": ("event-start", -600), "end": ("event-end", 600)},
        ),
    ],
)
def test_manual_alarm_examples(db: None, name: str, alarms: dict[str, tuple[str, int]]) -> None:
    xmlconfig.import_configuration(read(name))

    assert _alarms(_room()) == alarms


def test_manual_send_cache_example_reads_an_ics_file_of_the_plugncast_server(db: None) -> None:
    xmlconfig.import_configuration(read("manual_5_2_send_cache_on_error.xml"))

    room = _room()
    assert room.send_cache_on_server_error is True
    assert room.server.type == Server.Type.ICS
    assert [r.address for r in room.resources.all()] == [".medias/.applets/.calendarui/room.ics"]


@pytest.mark.parametrize(
    ("name", "calendar_id"),
    [
        ("manual_5_2_filter_sensitivity.xml", "room"),
        ("manual_5_2_filter_sensitivity_all_rooms.xml", "all_rooms"),
    ],
)
def test_manual_filter_sensitivity_examples(db: None, name: str, calendar_id: str) -> None:
    xmlconfig.import_configuration(read(name))

    assert _room(calendar_id).filter.sensitivity == "Personal,Private,Confidential"


def test_imported_calendar_without_mask_param_masks_nothing(db: None) -> None:
    # A calendar made in the admin masks private events by default; a file
    # keeps exactly what it says.
    xmlconfig.import_configuration(read("manual_5_2_resource.xml"))

    assert _room().filter.mask_sensitivity == ""


def test_every_param_and_extension_lands_in_its_column(db: None) -> None:
    xmlconfig.import_configuration(read("extensions_every_param.xml"))

    hall = _room("hall-a")
    assert [r.address for r in hall.resources.all()] == ["hall-a@contoso.com", "hall-b@contoso.com"]
    assert hall.request_window == 14
    assert hall.cache_persistence == 60
    assert hall.send_cache_on_server_error is True
    assert hall.username == "CONTOSO\\hall-reader"
    assert hall.password == "fake-secret-calendar-pwd"
    assert hall.label == "Hall A"
    assert _alarms(hall) == {"start": ("day-start", -600), "end": ("day-end", 300)}
    assert hall.timezone == "Europe/Paris"
    assert hall.include_body is True
    assert hall.feed_key == "fake-secret-feed-key-0123456789"
    f = hall.filter
    assert (f.is_cancelled, f.is_draft, f.is_meeting) == (False, True, True)
    assert f.sensitivity == "Confidential"
    assert f.importance == "Low,High"
    assert f.subject == "*##*,private*"
    assert f.free_busy == "Free,Tentative"
    assert f.mask_sensitivity == "Personal,Private"
    assert f.detail_level == "limited"
    assert _room("board.room").filter.detail_level == "availability"

    onprem = Server.objects.get(server_id="onprem")
    assert onprem.base_uri == ""
    assert onprem.autodiscover == "delegate@contoso.com"
    assert onprem.service_account is not None
    assert onprem.service_account.username == "CONTOSO\\delegate"
    assert onprem.service_account.password == "fake-secret-onprem & <more>"

    graph = Server.objects.get(server_id="graph")
    assert graph.base_uri == "https://graph.microsoft.us"
    assert graph.app_registration is not None
    assert graph.app_registration.authority == "https://login.microsoftonline.us"
    assert graph.app_registration.client_secret == "fake-secret-graph-client"

    delegated = Server.objects.get(server_id="delegated")
    assert delegated.base_uri == "https://graph.microsoft.com"  # the default for graph
    app = delegated.app_registration
    assert app is not None
    assert app.flow == AppRegistration.Flow.DELEGATED
    assert app.account == "signage@contoso.com"
    assert app.client_secret == ""
    assert Calendar.objects.get(calendar_id="lobby").resources.count() == 0

    canteen = _room("canteen")
    assert canteen.server.type == Server.Type.ICS
    assert [r.address for r in canteen.resources.all()] == [
        "menu.ics",
        "https://other.example.com/events.ics",
    ]


def test_delegated_server_says_someone_must_sign_in(db: None) -> None:
    plan = xmlconfig.import_configuration(read("extensions_every_param.xml"), dry_run=True)

    assert any("signage@contoso.com must sign in" in warning for warning in plan.warnings)


def test_mixed_prefixes_namespaces_and_param_case_read_the_same(db: None) -> None:
    xmlconfig.import_configuration(read("real_world_mixed_prefixes.xml"))

    exchange = Server.objects.get(server_id="exchange")
    assert exchange.http_scheme == "digest"
    assert exchange.service_account is not None
    assert exchange.service_account.password == "fake-secret-mixed"
    assert Server.objects.get(server_id="files").type == "ics"
    room1 = _room("room1")
    assert [r.address for r in room1.resources.all()] == ["room1@example.com"]
    assert room1.request_window == 3
    assert room1.cache_persistence == 0
    assert room1.send_cache_on_server_error is True
    assert room1.filter.sensitivity == "Personal,Private"
    room2 = _room("room2")
    assert [r.address for r in room2.resources.all()] == ["room2@example.com"]
    assert _alarms(room2) == {"start": (Alarm.Related.EVENT_START, -300)}
    assert [r.address for r in _room("files").resources.all()] == ["agenda.ics"]


def test_undeclared_prefixes_are_tolerated(db: None) -> None:
    xmlconfig.import_configuration(read("undeclared_prefixes.xml"))

    assert Calendar.objects.get(calendar_id="room").server.server_id == "serverId"


def test_two_servers_with_the_same_account_share_one_service_account(db: None) -> None:
    xml = b"""<?xml version="1.0" encoding="UTF-8"?>
<configuration>
  <servers>
    <server id="a" type="ews"><baseuri>https://a.example.com</baseuri>
      <authentication type="http-authentication"><credentials>
        <username>delegate@example.com</username><password>fake-secret-shared</password>
      </credentials></authentication></server>
    <server id="b" type="ews"><baseuri>https://b.example.com</baseuri>
      <authentication type="http-authentication"><credentials>
        <username>delegate@example.com</username><password>fake-secret-shared</password>
      </credentials></authentication></server>
  </servers>
  <calendars/>
</configuration>"""

    xmlconfig.import_configuration(xml)

    assert ServiceAccount.objects.count() == 1
    assert (
        Server.objects.get(server_id="a").service_account
        == Server.objects.get(server_id="b").service_account
    )
