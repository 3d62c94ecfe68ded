"""The application in real processes: ``manage.py``, a clean environment, a free port.

Tests that run ``manage.py`` (refresh, qcluster) or gunicorn in subprocesses
share these, so each says only what its own processes do differently.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from tests.fixtures.exchange import EWS_DELEGATE, EWS_PASSWORD

ROOT = Path(__file__).resolve().parent.parent

# This process's database, Redis, settings and pytest variables are not the subprocesses'.
NOT_INHERITED = ("DATABASE_URL", "REDIS_URL", "DJANGO_", "PYTEST")

# The start of a ``manage.py shell -c`` set-up: the fake Exchange (``ews_env``) as
# server ``ews``, and ``add_calendar`` for calendars with their filter and rooms.
EWS_SETUP = """
import os
from accounts.models import ServiceAccount
from connector.models import Calendar, Filter, Resource, Server

delegate = ServiceAccount.objects.create(
    name="delegate", username=os.environ["T_EWS_USER"], password=os.environ["T_EWS_PASSWORD"]
)
ews = Server.objects.create(
    server_id="exchange", type="ews", base_uri=os.environ["T_EWS_URL"], service_account=delegate
)


def add_calendar(calendar_id, server, rooms, **fields):
    calendar = Calendar.objects.create(calendar_id=calendar_id, server=server, **fields)
    Filter.objects.create(calendar=calendar)
    for position, room in enumerate(rooms):
        Resource.objects.create(calendar=calendar, address=room, position=position)
"""


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This process's environment without its database and settings, data under ``tmp_path``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(NOT_INHERITED)}
    env.update(DATA_DIR=str(tmp_path / "data"), ENV_FILE=str(tmp_path / "no.env"))
    env.update(extra)
    return env


def ews_env(fake_ews: Any) -> dict[str, str]:
    """What ``EWS_SETUP`` reads: the fake Exchange's address and its service account."""
    return {"T_EWS_URL": fake_ews.url, "T_EWS_USER": EWS_DELEGATE, "T_EWS_PASSWORD": EWS_PASSWORD}


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,  # a loaded CI machine migrates slowly
    )


def migrate_and_set_up(env: dict[str, str], setup: str) -> None:
    """Migrate the database of ``env``, then run ``setup`` in ``manage.py shell``."""
    for args in (("migrate", "--noinput"), ("shell", "-c", setup)):
        done = manage(env, *args)
        assert done.returncode == 0, done.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def gunicorn(
    env: dict[str, str], log_path: Path, *, workers: int, threads: int
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The production web server on a free loopback port; (base URL, master process).

    Waits until it answers (a worker may take seconds to import Django on a loaded
    machine) and stops it at the end.
    """
    port = free_port()
    log = log_path.open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "connector.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                requests.get(f"{url}/ical/unknown.ics", timeout=5)
                break
            except (requests.ConnectionError, requests.Timeout):
                # Not listening yet, or a worker still importing Django.
                if time.monotonic() > deadline or server.poll() is not None:
                    raise AssertionError(
                        "gunicorn did not start:\n" + log_path.read_text()
                    ) from None
                time.sleep(0.2)  # waiting for a real process to listen
        yield url, server
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
