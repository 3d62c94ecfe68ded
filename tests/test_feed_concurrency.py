"""Many players asking for the same stale feed at once cause one Exchange read, not many.

Runs the real web server (gunicorn, three worker processes with threads) on a
file SQLite database, against the fake Exchange of this process made slow, and
fires concurrent requests: every player gets the feed, each room is read once.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.fixtures.exchange import EWS_DELEGATE, EWS_PASSWORD
from tests.fixtures.feed import parse_feed

ROOT = Path(__file__).resolve().parent.parent
ROOM_A, ROOM_B = "room-a@contoso.com", "room-b@contoso.com"
PLAYERS = 12

SETUP = """
import os
from accounts.models import ServiceAccount
from connector.models import Calendar, Filter, Resource, Server

delegate = ServiceAccount.objects.create(
    name="delegate", username=os.environ["T_EWS_USER"], password=os.environ["T_EWS_PASSWORD"]
)
server = Server.objects.create(
    server_id="exchange", type="ews", base_uri=os.environ["T_EWS_URL"], service_account=delegate
)
calendar = Calendar.objects.create(calendar_id="lobby", server=server)
Filter.objects.create(calendar=calendar)
for position, room in enumerate(["room-a@contoso.com", "room-b@contoso.com"]):
    Resource.objects.create(calendar=calendar, address=room, position=position)
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def web(tmp_path, fake_ews):  # type: ignore[no-untyped-def]
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_URL", "REDIS_URL", "DJANGO_", "PYTEST"))
    }
    env.update(
        DATA_DIR=str(tmp_path / "data"),
        ENV_FILE=str(tmp_path / "no.env"),
        T_EWS_URL=fake_ews.url,
        T_EWS_USER=EWS_DELEGATE,
        T_EWS_PASSWORD=EWS_PASSWORD,
    )
    for args in (("migrate", "--noinput"), ("shell", "-c", SETUP)):
        done = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,  # a loaded CI machine migrates slowly
        )
        assert done.returncode == 0, done.stderr
    port = _free_port()
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
        except requests.ConnectionError:
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
