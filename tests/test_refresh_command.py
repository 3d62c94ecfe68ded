"""manage.py refresh_calendars [ID ...]: refresh now, one line per calendar."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import CommandError, call_command

from connector.models import Snapshot
from tests.fixtures.identity import GRAPH_CLIENT_ID

pytestmark = [
    pytest.mark.django_db(transaction=True),  # refreshes run in a bounded thread
    pytest.mark.usefixtures("refresh_threads_joined"),
]

ROOM_A, ROOM_B = "room-a@contoso.com", "room-b@contoso.com"


@pytest.fixture
def calendars(make_calendar, graph_server):  # type: ignore[no-untyped-def]
    return [
        make_calendar("alpha", server=graph_server, resources=(ROOM_A,)),
        make_calendar("beta", server=graph_server, resources=(ROOM_A, ROOM_B)),
        make_calendar("gamma", server=graph_server, resources=("big-hall@contoso.com",)),
    ]


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("refresh_calendars", *args, stdout=out, no_color=True)
    return out.getvalue()


def test_refreshes_every_calendar_and_prints_a_line_each(calendars, fake_graph) -> None:  # type: ignore[no-untyped-def]
    lines = run().splitlines()
    assert len(lines) == 3
    for line, calendar_id in zip(lines, ["alpha", "beta", "gamma"], strict=True):
        assert re.fullmatch(
            rf"{calendar_id}: ok, \d+ events, \d+\.\d\d s, (changed|unchanged)", line
        ), line
    assert Snapshot.objects.count() == 3
    assert len(fake_graph.calendar_view_requests(ROOM_A)) == 1  # shared room, read once


def test_refreshes_only_the_given_ids(calendars, fake_graph) -> None:  # type: ignore[no-untyped-def]
    lines = run("gamma").splitlines()
    assert [line.split(":")[0] for line in lines] == ["gamma"]
    assert list(Snapshot.objects.values_list("calendar__calendar_id", flat=True)) == ["gamma"]


def test_unknown_id_is_an_error(calendars) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CommandError, match="Unknown calendar id.*nope"):
        run("alpha", "nope")


def test_a_failure_is_printed_with_its_hint_and_exits_non_zero(calendars, fake_graph) -> None:  # type: ignore[no-untyped-def]
    fake_graph.block_by_access_policy(GRAPH_CLIENT_ID, ROOM_B)
    out = io.StringIO()
    with pytest.raises(CommandError, match="1 of 3 calendar"):
        call_command("refresh_calendars", stdout=out, no_color=True)
    lines = dict(line.split(": ", 1) for line in out.getvalue().splitlines())
    assert lines["alpha"].startswith("ok")
    assert lines["gamma"].startswith("ok")
    assert lines["beta"].startswith("failed")
    assert "Hint:" in lines["beta"]


def test_no_calendars(db: None) -> None:
    assert run() == "No calendars to refresh.\n"
