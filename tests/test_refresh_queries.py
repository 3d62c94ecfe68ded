"""A refresh round's database work grows by a fixed few queries per calendar.

The round loads its calendars' rooms, filters, alarms and credentials with one
query per relation, claims and releases them with one statement each for them
all, and writes per calendar only its snapshot and its outcome. Counted, not
timed: the queries of a warm round of 4 calendars against one of 8 (inside the
test's transaction the rooms are read in the caller's thread, so every query
of the round is seen).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from connector.models import Calendar
from connector.services.refresh import refresh_calendars
from tests.fakes.ews import FakeExchange
from tests.fakes.rooms import build_rooms
from tests.fixtures.exchange import EWS_DELEGATE

ROOMS = [f"room-{number:02d}@contoso.com" for number in range(16)]
# What one more calendar of two rooms may add to a round: its snapshot (read and
# write in a transaction), its outcome, and its rooms' last good copies.
PER_CALENDAR = 6


def queries_of_a_round(count: int, server: Any, make_calendar: Any, minutes: int) -> int:
    ids = [f"q{count}-{number}" for number in range(count)]
    if not Calendar.objects.filter(calendar_id=ids[0]).exists():
        for number, calendar_id in enumerate(ids):
            make_calendar(
                calendar_id,
                server=server,
                resources=tuple(ROOMS[2 * number :][:2]),
                alarms={"start": ("event-start", -600)},
            )
    calendars = list(Calendar.objects.filter(calendar_id__in=ids).select_related("server"))
    with CaptureQueriesContext(connection) as captured:
        outcomes = refresh_calendars(calendars, now=timezone.now() + dt.timedelta(minutes=minutes))
    assert [outcome.line() for outcome in outcomes if not outcome.ok] == []
    return len(captured.captured_queries)


def test_each_calendar_adds_a_fixed_few_queries_to_a_round(
    make_calendar: Any, ews_server: Any, fake_ews: FakeExchange
) -> None:
    events = build_rooms(dt.date.today())["room-b@contoso.com"]
    for room in ROOMS:
        fake_ews.add_mailbox(room, events)
    fake_ews.grant(EWS_DELEGATE, *ROOMS)
    for count in (4, 8):  # warm: statuses, snapshots and copies exist, the version is known
        queries_of_a_round(count, ews_server, make_calendar, minutes=0)

    four = queries_of_a_round(4, ews_server, make_calendar, minutes=10)
    eight = queries_of_a_round(8, ews_server, make_calendar, minutes=10)

    assert eight - four <= 4 * PER_CALENDAR, (four, eight)
    assert four <= 4 * PER_CALENDAR + 20, four  # and a fixed few for the round itself
