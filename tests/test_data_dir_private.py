"""DATA_DIR is the service user's alone: 0600 files and 0700 folders where ews-calendar makes them.

The database, its WAL, the generated keys and the metrics files hold secrets or
what players are shown; on a shared host nobody else may read them, whatever
umask the service was started with.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import requests

from tests.helpers_process import ROOT, free_port
from tests.test_serve import STARTED, Serve, wait_until

# The usual umask of a shell or a service manager: files readable by everyone.
OPEN_UMASK = 0o022


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def readable_by_others(data_dir: Path) -> list[str]:
    """Every file or folder under data_dir (and itself) that group or others may use."""
    found = []
    for path in [data_dir, *data_dir.rglob("*")]:
        if mode(path) & 0o077:
            found.append(f"{path.relative_to(data_dir.parent)} {oct(mode(path))}")
    return found


def test_migrate_makes_a_private_data_dir_database_and_keys(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "SECRET_KEY", "FIELD_ENCRYPTION_KEY")
    }
    env.update(DATA_DIR=str(data_dir), ENV_FILE=str(tmp_path / "none.env"))

    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "migrate", "--verbosity", "0"],
        env=env,
        cwd=ROOT,
        check=True,
        timeout=120,
        umask=OPEN_UMASK,
    )

    assert mode(data_dir) == 0o700
    for name in ("db.sqlite3", "secret_key", "field_encryption_key"):
        assert mode(data_dir / name) == 0o600, name
    assert mode(data_dir / "static") == 0o700
    # A writer opened under the open umask: SQLite's WAL and shared memory follow the database.
    previous = os.umask(OPEN_UMASK)
    try:
        connection = sqlite3.connect(data_dir / "db.sqlite3")
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("CREATE TABLE written_by_the_test (x INTEGER)")
            connection.commit()
            for suffix in ("-wal", "-shm"):
                assert mode(data_dir / f"db.sqlite3{suffix}") == 0o600, suffix
        finally:
            connection.close()
    finally:
        os.umask(previous)
    assert readable_by_others(data_dir) == []


def test_serve_keeps_everything_it_writes_in_data_dir_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    previous = os.umask(OPEN_UMASK)  # serve inherits it, as from a shell
    try:
        serve = Serve(data_dir, free_port())
    finally:
        os.umask(previous)
    try:
        wait_until(serve.answers, 120, "/admin/login/ to answer")
        serve.children()
        # A scrape and a feed request: the web and worker processes write metrics files.
        assert requests.get(serve.url("/metrics"), timeout=10).status_code == 200
        requests.get(serve.url("/ical/nosuch.ics"), timeout=10)
        wait_until(lambda: any((data_dir / "metrics").glob("*.db")), 30, "metrics files")
        assert (data_dir / "db.sqlite3-wal").exists()  # the worker holds it open

        assert readable_by_others(data_dir) == []
        assert mode(data_dir / "metrics") == 0o700
    finally:
        serve.process.send_signal(signal.SIGINT)
        try:
            serve.wait(timeout=60)
        finally:
            for _name, pid in STARTED.findall(serve.output):  # whatever a failure left running
                try:
                    os.killpg(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            serve.kill()
