"""What connections learn is kept in the database: a new process asks Exchange nothing twice.

Runs ``manage.py`` in real subprocesses on a file SQLite database, against the
fake Exchange (EWS, NTLM), the fake Graph and the fake identity platform of
this process: the second ``refresh_calendars`` in a new process costs exactly
one Exchange request per (server, room) and no token request.
"""

from __future__ import annotations

import pytest

from tests.fixtures.exchange import EWS_DELEGATE, EWS_PASSWORD
from tests.fixtures.identity import GRAPH_CLIENT_ID, GRAPH_SECRET, TENANT
from tests.helpers_process import EWS_SETUP, clean_env, ews_env, manage, migrate_and_set_up

ROOM_A, ROOM_B, HALL = "room-a@contoso.com", "room-b@contoso.com", "big-hall@contoso.com"

SETUP = (
    EWS_SETUP
    + """
from accounts.models import AppRegistration

app = AppRegistration.objects.create(
    name="contoso", tenant=os.environ["T_TENANT"], client_id=os.environ["T_CLIENT_ID"],
    client_secret=os.environ["T_SECRET"], authority=os.environ["T_AUTHORITY"],
)
graph = Server.objects.create(
    server_id="graph", type="graph", base_uri=os.environ["T_GRAPH_URL"], app_registration=app
)
add_calendar("lobby", ews, ["room-a@contoso.com", "room-b@contoso.com"])
add_calendar("floor-1", ews, ["room-a@contoso.com"])
add_calendar("hall", ews, ["big-hall@contoso.com"])
add_calendar("cloud", graph, ["room-a@contoso.com", "room-b@contoso.com"])
"""
)


@pytest.fixture
def process_env(tmp_path, fake_ews, fake_identity, fake_graph):  # type: ignore[no-untyped-def]
    env = clean_env(
        tmp_path,
        **ews_env(fake_ews),
        T_TENANT=TENANT,
        T_CLIENT_ID=GRAPH_CLIENT_ID,
        T_SECRET=GRAPH_SECRET,
        T_AUTHORITY=fake_identity.url,
        T_GRAPH_URL=fake_graph.url,
    )
    migrate_and_set_up(env, SETUP)
    return env


def test_second_run_in_a_new_process_costs_one_request_per_room_and_no_token(  # type: ignore[no-untyped-def]
    process_env, fake_ews, fake_identity, fake_graph
) -> None:
    first = manage(process_env, "refresh_calendars")
    assert first.returncode == 0, first.stdout + first.stderr
    assert fake_identity.token_requests() == 1

    fake_ews.clear_log()
    fake_graph.clear_log()
    fake_identity.clear_log()
    second = manage(process_env, "refresh_calendars")
    assert second.returncode == 0, second.stdout + second.stderr
    lines = second.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["cloud", "floor-1", "hall", "lobby"]
    assert all(": ok, " in line for line in lines), lines

    # EWS: one FindItem per room, nothing else (no version probe, no folder look-up),
    # although room-a is shown by two calendars of that server.
    operations = sorted((op.operation, op.mailboxes) for op in fake_ews.ops)
    assert operations == [
        ("FindItem", (HALL,)),
        ("FindItem", (ROOM_A,)),
        ("FindItem", (ROOM_B,)),
    ]
    # Graph: one calendarView per room and the token from the shared cache.
    assert len(fake_graph.calendar_view_requests(ROOM_A)) == 1
    assert len(fake_graph.calendar_view_requests(ROOM_B)) == 1
    assert fake_identity.token_requests() == 0


def test_a_failing_run_exits_non_zero_with_the_hint(process_env, fake_ews) -> None:  # type: ignore[no-untyped-def]
    fake_ews.revoke(EWS_DELEGATE, HALL)
    result = manage(process_env, "refresh_calendars", "hall", "lobby")
    assert result.returncode == 1
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert lines["lobby"].startswith("ok")
    assert lines["hall"].startswith("failed")
    assert "Hint:" in lines["hall"]
    assert EWS_PASSWORD not in result.stdout + result.stderr
