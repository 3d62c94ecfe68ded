"""Import → export → import gives the same configuration."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command

from accounts.models import AppRegistration, ServiceAccount
from connector import xmlconfig
from connector.models import Alarm, Calendar, Filter, Resource, Server
from tests.xmlconfig_helpers import configuration_dump, full_dump, read

FILES = [
    "spec_example.xml",
    "extensions_every_param.xml",
    "real_world_mixed_prefixes.xml",
    "manual_5_2_hide_10_minutes_after.xml",
    "manual_5_2_send_cache_on_error.xml",
]


def empty_the_database() -> None:
    Calendar.objects.all().delete()
    Server.objects.all().delete()
    ServiceAccount.objects.all().delete()
    AppRegistration.objects.all().delete()


@pytest.mark.parametrize("name", FILES)
def test_export_with_secrets_imports_into_an_empty_database_as_the_same_configuration(
    db: None, name: str
) -> None:
    xmlconfig.import_configuration(read(name))
    first = configuration_dump()
    exported = xmlconfig.export_configuration(include_secrets=True)

    empty_the_database()
    xmlconfig.import_configuration(exported.encode())

    assert configuration_dump() == first
    assert xmlconfig.export_configuration(include_secrets=True) == exported


@pytest.mark.parametrize("name", FILES)
def test_export_without_secrets_imports_elsewhere_as_the_same_configuration_but_secrets(
    db: None, name: str
) -> None:
    xmlconfig.import_configuration(read(name))
    first = configuration_dump(secrets=False)
    exported = xmlconfig.export_configuration()

    empty_the_database()
    xmlconfig.import_configuration(exported.encode())

    assert configuration_dump(secrets=False) == first


@pytest.mark.parametrize("name", FILES)
def test_export_without_secrets_reimported_over_the_same_database_changes_nothing(
    db: None, name: str
) -> None:
    xmlconfig.import_configuration(read(name))
    before = full_dump()

    plan = xmlconfig.import_configuration(xmlconfig.export_configuration().encode())

    assert plan.is_empty, plan.lines()
    assert full_dump() == before  # passwords, secrets and feed keys kept


def test_configuration_made_in_the_admin_way_round_trips(db: None) -> None:
    # Rows made by hand (not by an import): a calendar without a filter row, a
    # server with no calendar, defaults everywhere.
    account = ServiceAccount.objects.create(
        name="hq", username="HQ\\delegate", password="fake-secret-hq"
    )
    server = Server.objects.create(
        server_id="hq", base_uri="https://mail.hq.example", service_account=account
    )
    Server.objects.create(server_id="spare", type="ics", base_uri="https://ics.example/")
    calendar = Calendar.objects.create(calendar_id="floor-1", server=server, label="Floor 1")
    Resource.objects.create(calendar=calendar, address="f1@hq.example", position=3)
    Alarm.objects.create(calendar=calendar, edge="end", related="event-end", offset=0)
    other = Calendar.objects.create(calendar_id="floor-2", server=server)
    Filter.objects.create(calendar=other)  # the admin's default: masks private events
    before = configuration_dump()

    exported = xmlconfig.export_configuration(include_secrets=True)
    empty_the_database()
    xmlconfig.import_configuration(exported.encode())
    after = configuration_dump()

    # Positions are renumbered and a missing filter row becomes the defaults it stood for.
    before["calendars"]["floor-1"]["resources"] = [("f1@hq.example", 0)]
    assert before["calendars"]["floor-1"]["filter"] is None
    before["calendars"]["floor-1"]["filter"] = after["calendars"]["floor-1"]["filter"]
    assert after["calendars"]["floor-1"]["filter"]["mask_sensitivity"] == (
        "Personal,Private,Confidential"
    )
    assert after == before


def test_export_config_command_output_round_trips(db: None, tmp_path: object) -> None:
    xmlconfig.import_configuration(read("extensions_every_param.xml"))
    first = configuration_dump()
    path = f"{tmp_path}/configuration.xml"
    call_command("export_config", "-o", path, "--include-secrets")

    empty_the_database()
    call_command("import_config", path)

    assert configuration_dump() == first


def test_a_carriage_return_in_a_password_survives_the_round_trip(db: None) -> None:
    # A parser reads a raw CR as LF; the export must write it as a reference (&#13;).
    # Found by tests/test_xml_import_properties.py: "&#13;" in an imported password.
    account = ServiceAccount.objects.create(
        name="hq", username="HQ\\delegate", password="fake-secret\r\nwith lines\r"
    )
    Server.objects.create(
        server_id="hq", base_uri="https://mail.hq.example", service_account=account
    )
    before = configuration_dump()

    exported = xmlconfig.export_configuration(include_secrets=True)
    empty_the_database()
    xmlconfig.import_configuration(exported.encode())

    assert configuration_dump() == before


def test_an_account_without_a_password_keeps_none_through_the_round_trip(db: None) -> None:
    # Two accounts of one username, one without a password: left out of the export,
    # the empty password read as "keep the stored one" and the import gave that
    # server the other account. An export with secrets writes <scc:password/>.
    empty = ServiceAccount.objects.create(name="kiosk", username="HQ\\signage", password="")
    full = ServiceAccount.objects.create(
        name="hq", username="HQ\\signage", password="fake-secret-hq"
    )
    Server.objects.create(server_id="a", base_uri="https://a.hq.example", service_account=full)
    Server.objects.create(server_id="b", base_uri="https://b.hq.example", service_account=empty)
    before = configuration_dump()

    exported = xmlconfig.export_configuration(include_secrets=True)
    empty_the_database()
    xmlconfig.import_configuration(exported.encode())

    assert "<scc:password/>" in exported
    # The file names no credentials: they come back named after their servers.
    assert unnamed(configuration_dump()["servers"]) == unnamed(before["servers"])


def unnamed(servers: dict[str, Any]) -> dict[str, Any]:
    for server in servers.values():
        server["credential"].pop("name")
    return servers


SERVERS_IN_THIS_ORDER = b"""<?xml version="1.0" encoding="UTF-8"?>
<configuration>
  <servers>
    <server id="z-online" type="graph">
      <authentication type="oauth2-client-credentials">
        <tenant>contoso.onmicrosoft.com</tenant>
        <clientid>11111111-1111-1111-1111-111111111111</clientid>
      </authentication>
    </server>
    <server id="z-onprem" type="ews">
      <baseuri>https://mail.contoso.com</baseuri>
      <authentication type="http-authentication">
        <username>CONTOSO\\signage</username>
      </authentication>
    </server>
    <server id="a-online" type="graph">
      <authentication type="oauth2-client-credentials">
        <tenant>contoso.onmicrosoft.com</tenant>
        <clientid>11111111-1111-1111-1111-111111111111</clientid>
        <clientsecret>fake-secret-online</clientsecret>
      </authentication>
    </server>
    <server id="a-onprem" type="ews">
      <baseuri>https://mail2.contoso.com</baseuri>
      <authentication type="http-authentication">
        <username>CONTOSO\\signage</username>
        <password>fake-secret-onprem</password>
      </authentication>
    </server>
  </servers>
  <calendars/>
</configuration>
"""


def test_a_server_without_a_secret_shares_the_one_the_file_gives_whatever_the_order(
    db: None,
) -> None:
    # The export writes servers in id order: had the credentials depended on the
    # order of the file, a round trip would have changed them.
    xmlconfig.import_configuration(SERVERS_IN_THIS_ORDER)
    servers = {server.server_id: server for server in Server.objects.all()}

    assert servers["z-online"].app_registration == servers["a-online"].app_registration
    assert servers["z-onprem"].service_account == servers["a-onprem"].service_account
    assert ServiceAccount.objects.get().password == "fake-secret-onprem"
    before = configuration_dump()
    exported = xmlconfig.export_configuration(include_secrets=True)
    empty_the_database()
    xmlconfig.import_configuration(exported.encode())
    assert configuration_dump() == before
