"""manage.py serve: one command runs the site; Ctrl-C stops everything it started."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from django.contrib.auth.models import User

from connector.management.commands.serve import ensure_superuser, open_url, prepare_metrics_dir
from tests.helpers_process import ROOT, free_port

PASSWORD = re.compile(r"^  Password: (\S+)$", re.MULTILINE)
STARTED = re.compile(r"^Started the (web server|worker) \(pid (\d+)\)\.$", re.MULTILINE)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def gone(pgid: int) -> bool:
    """No process of this group is left, but zombies (only an exit status to collect)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended while we looked
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            return False
    return True


class Serve:
    """``manage.py serve`` in a process of its own, its output collected."""

    def __init__(self, data_dir: Path, port: int, **env: str) -> None:
        self.port = port
        environment = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("DJANGO_SUPERUSER_", "PROMETHEUS_"))
        }
        environment.update(
            DATA_DIR=str(data_dir), ENV_FILE=str(data_dir / "none.env"), PYTHONUNBUFFERED="1"
        )
        environment.pop("DATABASE_URL", None)
        environment.update(env)
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "serve", "--bind", f"127.0.0.1:{port}"],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # our SIGINT is for serve alone, not for pytest
        )
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self._lines.append(raw.decode(errors="replace"))

    @property
    def output(self) -> str:
        return "".join(self._lines)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answers(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"serve exited early:\n{self.output}")
        try:
            return requests.get(self.url("/admin/login/"), timeout=5).status_code == 200
        except requests.RequestException:  # not listening yet, or busy starting
            return False

    def children(self) -> dict[str, int]:
        wait_until(lambda: len(STARTED.findall(self.output)) == 2, 60, "both children")
        return {name: int(pid) for name, pid in STARTED.findall(self.output)}

    def wait(self, timeout: float = 60) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def serves() -> Iterator[list[Serve]]:
    started: list[Serve] = []
    yield started
    for serve in started:  # whatever a failing test left running
        for pid in STARTED.findall(serve.output):
            try:
                os.killpg(int(pid[1]), signal.SIGKILL)
            except ProcessLookupError:
                pass
        serve.kill()


def sign_in(serve: Serve, username: str, password: str) -> requests.Response:
    session = requests.Session()
    session.get(serve.url("/admin/login/"), timeout=10)
    return session.post(
        serve.url("/admin/login/?next=/admin/"),
        data={
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
            "next": "/admin/",
        },
        headers={"Referer": serve.url("/admin/login/")},
        allow_redirects=False,
        timeout=10,
    )


def test_first_run_serves_the_admin_prints_a_password_once_and_stops_on_ctrl_c(
    data_dir: Path, serves: list[Serve]
) -> None:
    serve = Serve(data_dir, free_port())
    serves.append(serve)

    wait_until(serve.answers, 120, "/admin/login/ to answer 200")
    children = serve.children()

    output = serve.output
    (password,) = PASSWORD.findall(output)
    assert output.count(password) == 1
    assert f"open http://127.0.0.1:{serve.port}/admin/" in output
    response = sign_in(serve, "admin", password)
    assert response.status_code == 302 and response.headers["Location"] == "/admin/"
    assert (data_dir / "metrics").is_dir()
    assert requests.get(serve.url("/static/admin/css/base.css"), timeout=10).status_code == 200

    serve.process.send_signal(signal.SIGINT)

    assert serve.wait(timeout=60) == 0
    assert set(children) == {"web server", "worker"}
    for pid in children.values():
        assert gone(pid), f"pid {pid} is still running"
    assert serve.output.rstrip().endswith("Stopped.")


def test_second_run_prints_no_password_and_stops_when_a_child_dies(
    data_dir: Path, serves: list[Serve]
) -> None:
    first = Serve(data_dir, free_port())
    serves.append(first)
    wait_until(first.answers, 120, "the first run to answer")
    first.process.send_signal(signal.SIGTERM)
    assert first.wait() == 0

    second = Serve(data_dir, free_port())
    serves.append(second)
    wait_until(second.answers, 120, "the second run to answer")
    children = second.children()

    assert PASSWORD.findall(first.output)
    assert not PASSWORD.findall(second.output)
    assert "Created the administrator" not in second.output

    os.kill(children["web server"], signal.SIGKILL)

    assert second.wait(timeout=60) != 0
    assert "The web server stopped unexpectedly (exit code -9); stopped the rest." in (
        second.output
    )
    for pid in children.values():
        assert gone(pid), f"pid {pid} is still running"


def test_administrator_from_the_environment_prints_no_password(
    db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "signage-admin")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "fake-secret-admin-password")
    out = io.StringIO()

    ensure_superuser(out)

    user = User.objects.get(username="signage-admin")
    assert user.is_superuser and user.is_staff
    assert user.check_password("fake-secret-admin-password")
    assert "fake-secret-admin-password" not in out.getvalue()
    assert "Password:" not in out.getvalue()


def test_no_administrator_is_made_when_one_exists(
    admin_user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)
    out = io.StringIO()

    ensure_superuser(out)

    assert out.getvalue() == ""
    assert User.objects.count() == 1


def test_metrics_dir_is_emptied_of_a_past_run(tmp_path: Path) -> None:
    old = tmp_path / "metrics" / "counter_123.db"
    old.parent.mkdir()
    old.write_bytes(b"stale")

    path = prepare_metrics_dir(tmp_path)

    assert path == tmp_path / "metrics"
    assert list(path.iterdir()) == []


@pytest.mark.parametrize(
    ("bind", "url"),
    [
        ("0.0.0.0:8000", "http://localhost:8000/admin/"),
        ("127.0.0.1:9000", "http://127.0.0.1:9000/admin/"),
        ("[::]:8000", "http://localhost:8000/admin/"),
        ("[::1]:8000", "http://[::1]:8000/admin/"),
        ("signage.example.com:80", "http://signage.example.com:80/admin/"),
    ],
)
def test_the_url_to_open(bind: str, url: str) -> None:
    assert open_url(bind) == url
