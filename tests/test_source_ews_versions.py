"""Every Exchange version the SPEC promises (2007 SP1 to 2019, and Exchange Online) reads a room.

The fake presents itself as each build (ServerVersionInfo) and speaks its schema: it
refuses a newer RequestServerVersion with ErrorInvalidServerVersion, as Exchange does,
so exchangelib's probe walks down to the server's version; the source stores what it
learned on the Server, and a new process goes straight to the calendar view.
"""

from __future__ import annotations

import pytest

from connector.models import Server
from connector.sources import open_source
from connector.sources.ews import reset_pool
from tests.fakes import ews as fake_ews_module
from tests.fakes.ews import FakeExchange
from tests.test_source_ews import ROOM_B, ews_server_for, expected, fields, week

# (build, the RequestServerVersion the calendar view must be sent with)
VERSIONS = {
    "2007-sp1": (fake_ews_module.EXCHANGE_2007_SP1, "Exchange2007_SP1"),
    "2010": (fake_ews_module.EXCHANGE_2010, "Exchange2010"),
    "2010-sp2": (fake_ews_module.EXCHANGE_2010_SP2, "Exchange2010_SP2"),
    "2013": (fake_ews_module.EXCHANGE_2013, "Exchange2013_SP1"),
    "2016": (fake_ews_module.EXCHANGE_2016, "Exchange2016"),
    "2019": (fake_ews_module.EXCHANGE_2019, "Exchange2016"),
    "online": (fake_ews_module.EXCHANGE_ONLINE, "Exchange2016"),
}


@pytest.mark.parametrize("name", VERSIONS)
def test_each_exchange_version_reads_a_room_and_is_learned_once(db: None, name: str) -> None:
    build, api_version = VERSIONS[name]
    with FakeExchange(build=build) as fake:
        fake.add_user("monitor@contoso.com", "fake-password-monitor", "ntlm", rooms=[ROOM_B])
        server = ews_server_for(fake, "monitor@contoso.com", "fake-password-monitor", "ntlm")
        try:
            records = open_source(server).fetch(ROOM_B, week(), include_body=True)
            learned = Server.objects.get(pk=server.pk).ews_version
            reset_pool()  # a new process: only the database remembers
            fake.clear_log()
            again = open_source(Server.objects.get(pk=server.pk)).fetch(ROOM_B, week())
        finally:
            reset_pool()
        second_round = [(op.operation, op.requested_version, op.outcome) for op in fake.ops]

    assert records
    assert [fields(r) for r in records] == expected(fake, ROOM_B, week())
    assert [fields(r) for r in again] == [fields(r) for r in records]
    assert all(r.body is not None for r in records)
    assert learned == ".".join(str(part) for part in build)
    assert second_round == [("FindItem", api_version, "ok")]


@pytest.mark.parametrize(
    "fault",
    ["ErrorInvalidServerVersion", "ErrorInvalidRequest", "ErrorIncorrectSchemaVersion", "html"],
)
def test_a_too_new_request_version_is_refused_as_exchange_does(db: None, fault: str) -> None:
    with FakeExchange(build=fake_ews_module.EXCHANGE_2010_SP2) as fake:
        fake.too_new_version_fault = fault
        fake.add_user("monitor@contoso.com", "fake-password-monitor", "ntlm", rooms=[ROOM_B])
        server = ews_server_for(fake, "monitor@contoso.com", "fake-password-monitor", "ntlm")
        try:
            open_source(server).fetch(ROOM_B, week())
        finally:
            reset_pool()
        probes = [(op.requested_version, op.outcome) for op in fake.ops[:-1]]

    assert probes[-1] == ("Exchange2010_SP2", "ok")
    assert {outcome for _, outcome in probes[:-1]} == {f"fault:{fault}"}
    assert probes[0][0] == "Exchange2016"


def test_a_version_refused_in_schema_validation_still_finds_the_servers_version(
    db: None,
) -> None:
    with FakeExchange(build=fake_ews_module.EXCHANGE_2010) as fake:
        fake.too_new_version_fault = "ErrorSchemaValidation"
        fake.add_user("monitor@contoso.com", "fake-password-monitor", "ntlm", rooms=[ROOM_B])
        server = ews_server_for(fake, "monitor@contoso.com", "fake-password-monitor", "ntlm")
        try:
            records = open_source(server).fetch(ROOM_B, week())
        finally:
            reset_pool()

    assert [fields(r) for r in records] == expected(fake, ROOM_B, week())
    assert Server.objects.get(pk=server.pk).ews_version == "14.0.639.21"
    assert fake.ops[-1].requested_version == "Exchange2010"


def test_a_server_without_a_version_probe_is_read_and_its_version_learned(db: None) -> None:
    with FakeExchange(build=fake_ews_module.EXCHANGE_2016) as fake:
        fake.serves_convert_id = False
        fake.add_user("monitor@contoso.com", "fake-password-monitor", "ntlm", rooms=[ROOM_B])
        server = ews_server_for(fake, "monitor@contoso.com", "fake-password-monitor", "ntlm")
        try:
            records = open_source(server).fetch(ROOM_B, week())
            reset_pool()
            fake.clear_log()
            again = open_source(Server.objects.get(pk=server.pk)).fetch(ROOM_B, week())
        finally:
            reset_pool()
        second_round = [op.operation for op in fake.ops]

    assert [fields(r) for r in records] == expected(fake, ROOM_B, week())
    assert [fields(r) for r in again] == [fields(r) for r in records]
    assert Server.objects.get(pk=server.pk).ews_version == "15.1.2507.6"
    assert second_round == ["FindItem"]
