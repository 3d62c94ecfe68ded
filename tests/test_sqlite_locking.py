"""SQLite shared by the web and worker processes: a writer waits, it never fails at once.

A transaction that reads and then writes (``update_or_create``, the heartbeat,
a snapshot swap) must take the write lock when it begins; otherwise a commit
by another process between its read and its write makes SQLite answer
"database is locked" at once, without waiting for the busy timeout.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db.backends.sqlite3.base import DatabaseWrapper


def _wrapper(path: Path) -> Any:
    return DatabaseWrapper({**settings.DATABASES["default"], "NAME": str(path)}, alias="other")


def test_read_then_write_transaction_waits_for_another_writer_instead_of_failing(
    tmp_path: Path, django_db_blocker: Any
) -> None:
    with django_db_blocker.unblock():
        _read_then_write_while_another_writes(tmp_path)


def _read_then_write_while_another_writes(tmp_path: Path) -> None:
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
        pytest.skip("SQLite only")
    path = tmp_path / "db.sqlite3"
    setup = _wrapper(path)
    with setup.cursor() as cursor:
        cursor.execute("CREATE TABLE beat (id INTEGER PRIMARY KEY, n INTEGER)")
        cursor.execute("INSERT INTO beat VALUES (1, 0)")
    setup.close()

    errors: list[BaseException] = []

    def other_process_writes() -> None:
        other = _wrapper(path)
        try:
            with other.cursor() as cursor:
                cursor.execute("UPDATE beat SET n = n + 1 WHERE id = 1")
        except BaseException as exc:  # reported to the test below
            errors.append(exc)
        finally:
            other.close()

    worker = _wrapper(path)
    worker.ensure_connection()
    # What transaction.atomic() does on SQLite when it opens a transaction.
    worker._start_transaction_under_autocommit()
    with worker.cursor() as cursor:
        cursor.execute("SELECT n FROM beat WHERE id = 1")
        cursor.fetchone()
        writer = threading.Thread(target=other_process_writes)
        writer.start()
        writer.join(timeout=0.5)  # a writer that does not wait commits in this time
        cursor.execute("UPDATE beat SET n = n + 10 WHERE id = 1")
    worker.commit()
    writer.join(timeout=30)
    with worker.cursor() as cursor:
        cursor.execute("SELECT n FROM beat WHERE id = 1")
        assert cursor.fetchone() == (11,)
    worker.close()
    assert not errors
