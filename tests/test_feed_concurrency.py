"""Many players asking for the same stale feed at once cause one Exchange read, not many.

Runs the real web server (gunicorn, three worker processes with threads) on a
file SQLite database, against the fake Exchange of this process made slow, and
fires concurrent requests: every player gets the feed, each room is read once.
"""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.fixtures.feed import parse_feed
from tests.helpers_process import EWS_SETUP, ROOT, clean_env, ews_env, free_port, migrate_and_set_up

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
    port = free_port()
    log = (tmp_path / "gunicorn.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "connector.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "3",
            "--threads",
            "4",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(f"{url}/ical/unknown.ics", timeout=5)
            break
        except (requests.ConnectionError, requests.Timeout):
            # Not listening yet, or a worker still importing Django on a loaded machine.
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail("gunicorn did not start:\n" + (tmp_path / "gunicorn.log").read_text())
            time.sleep(0.2)  # waiting for a real process to listen
    yield url
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


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
