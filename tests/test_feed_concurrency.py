"""Many players asking for the same stale feed at once cause one Exchange read, not many.

Runs the real web server (gunicorn, three worker processes with threads) on a
file SQLite database, against the fake Exchange of this process made slow, and
fires concurrent requests: every player gets the feed, each room is read once.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.fixtures.feed import parse_feed
from tests.helpers_process import EWS_SETUP, clean_env, ews_env, gunicorn, migrate_and_set_up

ROOM_A, ROOM_B = "room-a@contoso.com", "room-b@contoso.com"
PLAYERS = 12

SETUP = (
    EWS_SETUP
    + """
add_calendar("lobby", ews, ["room-a@contoso.com", "room-b@contoso.com"])
"""
)


@pytest.fixture
def web(tmp_path, fake_ews):  # type: ignore[no-untyped-def]
    env = clean_env(tmp_path, **ews_env(fake_ews))
    migrate_and_set_up(env, SETUP)
    with gunicorn(env, tmp_path / "gunicorn.log", workers=3, threads=4) as (url, _):
        yield url


def test_concurrent_requests_for_a_stale_feed_read_each_room_once(web, fake_ews) -> None:  # type: ignore[no-untyped-def]
    fake_ews.faults.latency = 0.5  # Exchange is slow: the requests overlap
    with ThreadPoolExecutor(PLAYERS) as pool:
        responses = list(
            pool.map(lambda _: requests.get(f"{web}/ical/lobby.ics", timeout=30), range(PLAYERS))
        )
    assert [response.status_code for response in responses] == [200] * PLAYERS
    assert len({response.content for response in responses}) == 1
    parse_feed(responses[0].content)
    assert fake_ews.count_op("FindItem", mailbox=ROOM_A) == 1
    assert fake_ews.count_op("FindItem", mailbox=ROOM_B) == 1
