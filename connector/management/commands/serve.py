"""manage.py serve: the whole application in one command.

Prepares the database, static files, the administrator account and the roles,
then runs the web server (gunicorn) and the background worker (django-q2's
qcluster) side by side. Ctrl-C or SIGTERM stops both; when one of them dies the
other is stopped too and serve exits non-zero, so that a supervisor (systemd,
a container runtime) restarts the whole. It and its children run with umask
077, so that what they write in DATA_DIR is readable by the service user only.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from argparse import ArgumentParser
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, OutputWrapper

from connector.roles import ensure_signage_staff_group

STOP_GRACE = 20  # seconds children get to finish before they are killed
# What serve and its children create in DATA_DIR (the database, its WAL, the metrics
# files, collected static files) is the service user's alone: 0600 files, 0700 folders.
PRIVATE_UMASK = 0o077
POLL = 0.2  # seconds between looks at the children


def ensure_superuser(out: OutputWrapper | TextIO, login_url: str = "") -> None:
    """Create the first administrator, once: when no superuser exists.

    From DJANGO_SUPERUSER_USERNAME/DJANGO_SUPERUSER_PASSWORD when given;
    otherwise with a generated password, printed this once and never again.
    """
    user_model = get_user_model()
    if user_model.objects.filter(is_superuser=True).exists():
        return
    username = os.environ.get("DJANGO_SUPERUSER_USERNAME") or "admin"
    password = os.environ.get("DJANGO_SUPERUSER_PASSWORD") or ""
    email = os.environ.get("DJANGO_SUPERUSER_EMAIL") or ""
    generated = not password
    if generated:
        password = secrets.token_urlsafe(12)
    user, _ = user_model.objects.get_or_create(username=username, defaults={"email": email})
    user.is_staff = user.is_superuser = user.is_active = True
    user.set_password(password)
    user.save()
    if not generated:
        out.write(
            f"Created the administrator {username!r} (password from DJANGO_SUPERUSER_PASSWORD)."
        )
        return
    rule = "=" * 72
    out.write(
        f"{rule}\n"
        f"  Created the administrator account {username!r}.\n"
        f"  Password: {password}\n"
        "  It is shown this once: sign in and change it"
        f"{' at ' + login_url if login_url else ''}.\n"
        f"{rule}"
    )


def prepare_metrics_dir(data_dir: Path) -> Path:
    """PROMETHEUS_MULTIPROC_DIR for the children: created, and emptied of a past run."""
    path = data_dir / "metrics"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)
    return path


def open_url(bind: str) -> str:
    host, _, port = bind.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 (printing where to go, not binding)
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/admin/"


def player_urls(bind: str) -> list[str]:
    """Where players fetch feeds: each name and address of this machine the site answers to."""
    host, _, port = bind.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 (printing where to go, not binding)
        names = [name for name in settings.ALLOWED_HOSTS if "*" not in name and name != "localhost"]
        names = [name for name in names if not name.startswith(("127.", "[::1]", "[fe80"))]
    else:
        names = [f"[{host}]" if ":" in host else host]
    names = [name.lstrip(".") for name in names if name] or ["localhost"]
    lines = ["Players fetch their feeds at (ALLOWED_HOSTS decides which names are answered):"]
    lines += [f"  http://{name}:{port}/ical/<calendarId>.ics" for name in names]
    return lines


def gunicorn_version_options() -> list[str]:
    """Options that only some gunicorn versions know."""
    import gunicorn

    # 25.1 added a control socket, by default in the home directory: two
    # instances (or a read-only home) would trip over it; serve needs none.
    if tuple(gunicorn.version_info[:2]) >= (25, 1):
        return ["--no-control-socket"]
    return []


class Supervisor:
    """Runs child processes; stops all when asked or when one of them ends."""

    def __init__(self, children: dict[str, list[str]], env: dict[str, str], out: Any) -> None:
        self.children = children
        self.env = env
        self.out = out
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.stop_signal: int | None = None

    def _ask_to_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_signal = signum

    def run(self) -> int:
        previous = {
            signum: signal.signal(signum, self._ask_to_stop)
            for signum in (signal.SIGINT, signal.SIGTERM)
        }
        died: tuple[str, int] | None = None
        try:
            for name, command in self.children.items():
                # A session of its own: a terminal's Ctrl-C reaches serve only,
                # which stops each child and its own children in order.
                self.processes[name] = subprocess.Popen(
                    command,
                    env=self.env,
                    cwd=settings.BASE_DIR,
                    start_new_session=True,
                    umask=PRIVATE_UMASK,
                )
                self.out.write(f"Started the {name} (pid {self.processes[name].pid}).")
            while self.stop_signal is None and died is None:
                for name, process in self.processes.items():
                    code = process.poll()
                    if code is not None:
                        died = (name, code)
                        break
                else:
                    time.sleep(POLL)
        finally:
            self.stop_all()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if died is not None:
            name, code = died
            self.out.write(f"The {name} stopped unexpectedly (exit code {code}); stopped the rest.")
            return 1
        self.out.write("Stopped.")
        return 0

    def stop_all(self) -> None:
        running = {name: p for name, p in self.processes.items() if p.poll() is None}
        for process in running.values():
            # The child alone: gunicorn's master and django-q2's sentinel stop
            # their own processes in order; signalling those directly would
            # leave the sentinel waiting for processes that are gone.
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for name, process in running.items():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.out.write(f"The {name} did not stop within {STOP_GRACE} s; killing it.")
                self._signal_group(process, signal.SIGKILL)
                process.wait()
        # Whatever a child left behind in its group (a worker's own children).
        for process in self.processes.values():
            self._signal_group(process, signal.SIGKILL)

    @staticmethod
    def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
        try:
            os.killpg(process.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


class Command(BaseCommand):
    help = (
        "Run ews-calendar: migrate, collect static files, create the first administrator, "
        "then the web server and the background worker together. Ctrl-C stops both."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--bind", default="0.0.0.0:8000", help="Address of the web server (0.0.0.0:8000)."
        )
        parser.add_argument("--workers", type=int, default=2, help="Web server processes (2).")
        parser.add_argument(
            "--threads", type=int, default=4, help="Threads per web server process (4)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        bind: str = options["bind"]
        url = open_url(bind)
        data_dir = Path(settings.DATA_DIR)
        os.umask(PRIVATE_UMASK)  # for what migrate and collectstatic write, before the children
        self.stdout.write(f"Data in {data_dir}. Preparing the database and static files…")
        try:
            call_command("migrate", interactive=False, verbosity=0)
            call_command("collectstatic", interactive=False, verbosity=0)
            ensure_signage_staff_group()
            ensure_superuser(self.stdout, login_url=url)
        except KeyboardInterrupt:
            # Ctrl-C before anything was started: nothing to stop, no traceback.
            self.stderr.write("Interrupted.")
            raise SystemExit(130) from None

        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(prepare_metrics_dir(data_dir))}
        env.setdefault("DJANGO_SETTINGS_MODULE", "connector.settings")
        children = {
            "web server": [
                sys.executable,
                "-m",
                "gunicorn",
                "connector.wsgi:application",
                "--bind",
                bind,
                "--workers",
                str(options["workers"]),
                "--threads",
                str(options["threads"]),
                "--worker-class",
                "gthread",
                "--graceful-timeout",
                "10",
                "--timeout",
                str(settings.FEED_REFRESH_TIMEOUT + 50),
                *gunicorn_version_options(),
            ],
            "worker": [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "qcluster"],
        }
        supervisor = Supervisor(children, env, self.stdout)
        self.stdout.write(f"ews-calendar is starting: open {url}  (Ctrl-C stops it)")
        for line in player_urls(bind):
            self.stdout.write(line)
        code = supervisor.run()
        if code:
            raise SystemExit(code)
