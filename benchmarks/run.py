"""The performance benchmark: one table, each figure beside its physical limit.

    .venv/bin/python benchmarks/run.py                      # everything, ~5 minutes
    .venv/bin/python benchmarks/run.py --only feed,build    # a subset
    .venv/bin/python benchmarks/run.py --only refresh --rooms 200 --latency-ms 100

Nothing beyond 127.0.0.1 is contacted: Exchange (EWS), the identity platform
and Graph are the protocol fakes of tests/fakes, answering after --latency-ms.
It uses its own temporary DATA_DIR and production settings (DEBUG off).

feed     gunicorn (2 sync workers) serves a fresh 200-event snapshot (~95 KB);
         wrk (Debian's package; it runs on the same 2 cores as the server) loads
         the same bytes as a static file served by whitenoise in the same
         server, the feed, and the feed with If-None-Match (304), with 50
         connections, in --feed-rounds interleaved rounds sharing --seconds.
build    build_calendar() (filters, alarms, iCalendar) for 10 ... 10,000 events.
refresh  ``manage.py refresh_calendars`` (the command, in its own process) over
         --rooms rooms (2 per calendar) per upstream, EWS then Graph, against
         the ideal rooms x latency / limit (EWS_MAX_CONCURRENCY, GRAPH_MAX_CONCURRENCY);
         a round longer than --refresh-cap seconds is stopped and its rate
         extrapolated; a round's time runs from the first request Exchange
         receives (not the process's start-up). Also: requests per room of a
         warm round, token requests per run, and the bytes of an unchanged
         Graph room against a full read.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FAKE_PASSWORD = "fake-bench-password"  # the fake Exchange's, never a real one
FAKE_SECRET = "fake-bench-client-secret"
TENANT = "contoso.onmicrosoft.com"
CLIENT_ID = "00000000-0000-0000-0000-0000000bench"
SECTIONS = ("feed", "build", "refresh")
EVENT_COUNTS = (10, 100, 1000, 10000)

rows: list[tuple[str, str, str]] = []  # (measure, figure, against the limit)


def row(measure: str, figure: str, limit: str = "") -> None:
    rows.append((measure, figure, limit))
    print(f"  {measure}: {figure}  {limit}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(data_dir: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATA_DIR": data_dir,
        "DJANGO_SETTINGS_MODULE": "connector.settings",
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PYTHONPATH": str(ROOT),
    }


def setup_django(data_dir: str) -> None:
    os.environ.update(child_env(data_dir))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


# --- records and calendars ----------------------------------------------------------


def events(count: int, resource: str, day: dt.date) -> list[Any]:
    """``count`` meetings spread over ``day`` in UTC, with organizer and location."""
    from connector.core.records import EventRecord

    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    step = dt.timedelta(seconds=max(1, 86400 // max(count, 1)))
    return [
        EventRecord(
            uid=f"040000008200E00074C5B7101A82E008-{resource}-{number:05d}",
            occurrence_id="",
            resource=resource,
            subject=f"Project review {number} - quarterly planning with the regional teams",
            start=start + number * step,
            end=start + number * step + dt.timedelta(minutes=30),
            location=f"Room {resource.split('@')[0]}, building 4, floor 2",
            organizer_name=f"Organizer Number{number % 37}",
            organizer_email=f"organizer{number % 37}@contoso.com",
            is_meeting=True,
            categories=("Blue category",),
            last_modified=start,
        )
        for number in range(count)
    ]


def ics_calendar(calendar_id: str) -> Any:
    from connector.models import Calendar, Filter, Resource, Server

    server, _ = Server.objects.get_or_create(
        server_id="bench-files", defaults={"type": "ics", "base_uri": "https://127.0.0.1:9/"}
    )
    calendar = Calendar.objects.create(
        calendar_id=calendar_id, server=server, cache_persistence=86400, timezone="UTC"
    )
    Filter.objects.create(calendar=calendar)
    Resource.objects.create(calendar=calendar, address="room-a@contoso.com")
    return calendar


# --- build --------------------------------------------------------------------------


def run_build(args: argparse.Namespace) -> None:
    from django.utils import timezone

    from connector.pipeline.build import build_calendar

    calendar = ics_calendar("bench-build")
    now = timezone.now()
    print("== build time of one feed", flush=True)
    times = {}
    for count in EVENT_COUNTS:
        records = {"room-a@contoso.com": events(count, "room-a@contoso.com", now.date())}
        best = float("inf")
        for _ in range(3 if count < 10000 else 1):
            started = time.perf_counter()
            result = build_calendar(calendar, records=records, now=now)
            best = min(best, time.perf_counter() - started)
        assert result.event_count == count, (result.event_count, count)
        times[count] = best
    base = times[EVENT_COUNTS[0]]
    for count in EVENT_COUNTS:
        per_event = times[count] / count * 1e6
        row(
            f"build {count:>5} events",
            f"{times[count] * 1000:8.1f} ms ({per_event:.0f} us/event)",
            f"x{times[count] / base:.0f} for x{count // EVENT_COUNTS[0]} events"
            + ("; target < 1000 ms" if count == 10000 else ""),
        )


# --- feed ---------------------------------------------------------------------------


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is not installed: apt-get install -y wrk (Debian's package)")
    return found


def wrk(
    url: str, seconds: int, connections: int, headers: dict[str, str] | None = None
) -> dict[str, float]:
    command = [wrk_binary(), "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    figures: dict[str, float] = {"errors": 0.0, "non2xx3xx": 0.0}

    def millis(text: str) -> float:
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    for line in output.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec:"):
            figures["rps"] = float(parts[1])
        elif len(parts) == 2 and parts[0] in ("50%", "99%"):
            figures[f"p{parts[0][:-1]}"] = millis(parts[1])
        elif line.strip().startswith("Socket errors:"):
            figures["errors"] = float(sum(int(n) for n in re.findall(r"\d+", line)))
        elif line.strip().startswith("Non-2xx or 3xx responses:"):
            figures["non2xx3xx"] = float(parts[-1])
    return figures


def combined(runs: list[dict[str, float]]) -> dict[str, float]:
    """Rounds of equal length as one: their mean rate, the median of their
    percentiles, all their errors."""
    return {
        "rps": statistics.fmean(run["rps"] for run in runs),
        "p50": statistics.median(run["p50"] for run in runs),
        "p99": statistics.median(run["p99"] for run in runs),
        "errors": sum(run["errors"] for run in runs),
        "non2xx3xx": sum(run["non2xx3xx"] for run in runs),
    }


def wait_for(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the web server did not answer at {url}")


def run_feed(args: argparse.Namespace, data_dir: str) -> None:
    from django.conf import settings
    from django.utils import timezone

    from connector.pipeline.build import build_calendar
    from connector.pipeline.snapshots import save_snapshot

    calendar = ics_calendar("bench")
    now = timezone.now()
    result = build_calendar(
        calendar, records={"room-a@contoso.com": events(200, "room-a", now.date())}, now=now
    )
    snapshot, _ = save_snapshot(calendar, result)
    body = snapshot.ics.encode("utf-8")
    # The same bytes as a static file, served by whitenoise from STATIC_ROOT.
    (Path(settings.STATIC_ROOT) / "bench.ics").write_bytes(body)

    port = free_port()
    web = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "connector.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--worker-class",
            "sync",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=child_env(data_dir),
    )
    base = f"http://127.0.0.1:{port}"
    connections, rounds = 50, max(1, args.feed_rounds)
    round_seconds = max(1, round(args.seconds / rounds))
    print(
        f"== feed: gunicorn 2 sync workers, DEBUG off; wrk -t2 -c{connections} on the "
        f"same 2 cores, {rounds} interleaved rounds of {round_seconds} s per kind; "
        f"a fresh 200-event snapshot of {len(body) / 1024:.0f} KB",
        flush=True,
    )
    try:
        wait_for(f"{base}/ical/bench.ics", 30)
        wait_for(f"{base}/static/bench.ics", 30)
        with urllib.request.urlopen(f"{base}/ical/bench.ics") as response:
            etag = response.headers["ETag"]
            assert response.read() == body
        with urllib.request.urlopen(f"{base}/static/bench.ics") as response:
            assert response.read() == body
        kinds = (
            ("static", "/static/bench.ics", {}),
            ("feed", "/ical/bench.ics", {}),
            ("feed 304", "/ical/bench.ics", {"If-None-Match": etag}),
        )
        for _, path, headers in kinds:
            wrk(base + path, 2, connections, headers)  # warm-up
        # Interleaved rounds: a change in the machine's load (other work sharing the
        # cores) falls on all three alike instead of on whichever ran at that time.
        runs: dict[str, list[dict[str, float]]] = defaultdict(list)
        for _ in range(rounds):
            for name, path, headers in kinds:
                runs[name].append(wrk(base + path, round_seconds, connections, headers))
        results = {name: combined(found) for name, found in runs.items()}
    finally:
        web.send_signal(signal.SIGTERM)
        web.wait(20)
    static, feed, not_modified = results["static"], results["feed"], results["feed 304"]
    for name, figures in results.items():
        bad = int(figures["errors"] + figures["non2xx3xx"])
        row(
            f"{name:<8} requests/s, p50 / p99",
            f"{figures['rps']:8.0f} /s, {figures['p50']:.1f} / {figures['p99']:.1f} ms, "
            f"{bad} errors",
            "" if name == "static" else f"{figures['rps'] / static['rps']:.2f} x static",
        )
    row(
        "feed / static requests/s",
        f"{feed['rps'] / static['rps']:.2f}",
        "target >= 0.90, feed p99 < 50 ms, 0 errors",
    )
    row(
        "304 / 200 requests/s",
        f"{not_modified['rps'] / feed['rps']:.2f}",
        "target > 1 (a 304 costs less than a 200)",
    )


# --- refresh ------------------------------------------------------------------------


def make_fakes(args: argparse.Namespace, rooms: list[str]) -> tuple[Any, Any, Any]:
    from tests.fakes.base import FakeCA, Request, Response
    from tests.fakes.ews import FakeExchange
    from tests.fakes.graph import FakeGraph
    from tests.fakes.identity import FakeIdentityPlatform
    from tests.fakes.rooms import build_rooms

    FakeCA.get().trust()  # the child processes inherit the bundle variables
    template = build_rooms(dt.date.today())["room-a@contoso.com"]
    ews = FakeExchange()
    ews.add_user("delegate@contoso.com", FAKE_PASSWORD, "ntlm", rooms=rooms)
    for room in rooms:
        ews.add_mailbox(room, list(template))

    class CountingGraph(FakeGraph):
        """Graph that also counts the bytes it sends per room."""

        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, **k)
            self.bytes_by_room: dict[str, int] = defaultdict(int)

        def handle(self, request: Request) -> Response:
            response = super().handle(request)
            from urllib.parse import unquote

            user = unquote(request.path.split("users")[-1].split("/calendarView")[0])
            user = re.sub(r"^[/(']+|[')]+$", "", user).lower()
            self.bytes_by_room[user] += len(response.encoded())
            return response

    identity = FakeIdentityPlatform()
    identity.add_app(TENANT, CLIENT_ID, FAKE_SECRET)
    graph = CountingGraph(identity, rooms={room: list(template) for room in rooms})
    graph.grant(CLIENT_ID, "Calendars.Read")
    for fake in (ews, identity, graph):
        fake.start()
    ews.faults.latency = graph.faults.latency = args.latency_ms / 1000
    return ews, identity, graph


def make_calendars(kind: str, server: Any, rooms: list[str]) -> list[str]:
    from connector.models import Calendar, Filter, Resource

    ids = []
    for number in range(0, len(rooms), 2):
        calendar = Calendar.objects.create(
            calendar_id=f"{kind}-{number // 2:04d}", server=server, cache_persistence=3600
        )
        Filter.objects.create(calendar=calendar)
        for position, room in enumerate(rooms[number : number + 2]):
            Resource.objects.create(calendar=calendar, address=room, position=position)
        ids.append(calendar.calendar_id)
    return ids


def refreshed_since(ids: list[str], since: dt.datetime) -> int:
    from connector.models import Snapshot

    return Snapshot.objects.filter(calendar__calendar_id__in=ids, generated__gte=since).count()


def room_reads(kind: str, fake: Any) -> int:
    """Requests that read a room: EWS FindItem operations, Graph calendar requests."""
    if kind == "ews":
        return sum(1 for op in fake.ops if op.operation == "FindItem")
    return int(fake.count())


def command_round(
    data_dir: str, ids: list[str], cap: float, fake: Any = None
) -> tuple[float, int, bool, float]:
    """Run ``manage.py refresh_calendars`` for ``ids``; (seconds, calendars done, whole, RSS MB).

    The seconds run from the first request the fake received (the process's start-up,
    Django's import, is not the refresh's) to the end of the process.
    """
    import psutil
    from django.utils import timezone

    since = timezone.now()
    seen = fake.count() if fake is not None else 0
    started = time.perf_counter()
    started_monotonic = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "refresh_calendars", *ids],
        cwd=ROOT,
        env=child_env(data_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    watched = psutil.Process(process.pid)
    rss = 0.0
    whole = True
    while process.poll() is None:
        try:
            rss = max(rss, watched.memory_info().rss / 1e6)
        except psutil.Error:
            pass
        if time.perf_counter() - started > cap:
            whole = False
            process.kill()
            process.wait()
            break
        time.sleep(0.1)
    elapsed = time.perf_counter() - started
    if fake is not None:
        with fake._log_lock:
            new = fake.requests[seen:]
        if new:
            elapsed -= new[0].received - started_monotonic
    return elapsed, refreshed_since(ids, since), whole, rss


def run_refresh(args: argparse.Namespace, data_dir: str) -> None:
    from django.conf import settings
    from django.utils import timezone

    from accounts.models import AppRegistration, ServiceAccount
    from connector.models import Server

    rooms = [f"room-{n:05d}@contoso.com" for n in range(args.rooms)]
    ews, identity, graph = make_fakes(args, rooms)
    try:
        account = ServiceAccount.objects.create(
            name="bench", username="delegate@contoso.com", password=FAKE_PASSWORD
        )
        registration = AppRegistration.objects.create(
            name="bench",
            tenant=TENANT,
            client_id=CLIENT_ID,
            client_secret=FAKE_SECRET,
            secret_expires=timezone.localdate() + dt.timedelta(days=365),
            authority=identity.url,
        )
        servers = {
            "ews": Server.objects.create(
                server_id="bench-ews", type="ews", base_uri=ews.url, service_account=account
            ),
            "graph": Server.objects.create(
                server_id="bench-graph",
                type="graph",
                base_uri=graph.url,
                app_registration=registration,
            ),
        }
        limits = {"ews": settings.EWS_MAX_CONCURRENCY, "graph": settings.GRAPH_MAX_CONCURRENCY}
        latency = args.latency_ms / 1000
        print(
            f"== refresh: manage.py refresh_calendars, {args.rooms} rooms "
            f"({args.rooms // 2} calendars x 2 rooms) per upstream, {args.latency_ms} ms "
            f"per Exchange answer, a round stopped after {args.refresh_cap:.0f} s",
            flush=True,
        )
        for kind, fake in (("ews", ews), ("graph", graph)):
            ids = make_calendars(kind, servers[kind], rooms)
            limit = limits[kind]
            ideal = args.rooms * latency / limit
            # Warm-up and requests per room: a small round twice (the second is warm).
            sample = ids[: min(len(ids), 10)]
            command_round(data_dir, sample, args.refresh_cap)
            before, reads_before = fake.count(), room_reads(kind, fake)
            command_round(data_dir, sample, args.refresh_cap)
            per_room = (room_reads(kind, fake) - reads_before) / (2 * len(sample))
            http_per_room = (fake.count() - before) / (2 * len(sample))
            elapsed, done, whole, rss = command_round(data_dir, ids, args.refresh_cap, fake)
            rooms_done = 2 * done
            rate = rooms_done / elapsed if elapsed else 0.0
            wall = elapsed if whole else (args.rooms / rate if rate else float("inf"))
            label = (
                f"{elapsed:.1f} s"
                if whole
                else (f"{rooms_done} rooms in {elapsed:.0f} s, so ~{wall:.0f} s")
            )
            row(
                f"refresh {kind:<5} {args.rooms} rooms wall / ideal",
                f"{label}, {rate:.0f} rooms/s",
                f"ideal {ideal:.1f} s ({limit} at once, {args.rooms / ideal:.0f} rooms/s): "
                f"{wall / ideal:.2f} x ideal, target <= 1.25",
            )
            row(f"refresh {kind:<5} requests per room (warm round)", f"{per_room:.2f}", "target 1")
            if kind == "ews":
                # A new process opens new connections: NTLM authenticates each in two more
                # HTTP exchanges (up to EWS_MAX_CONCURRENCY connections).
                row(
                    "refresh ews   HTTP exchanges per room",
                    f"{http_per_room:.2f}",
                    "incl. NTLM's handshake on each new connection of the new process",
                )
            if kind == "graph":
                row(
                    "refresh graph token requests per run",
                    f"{identity.token_requests()} in 3 command runs (2 small, 1 of all rooms)",
                    "target 1 per app registration (all the command runs of this benchmark)",
                )
            row(f"refresh {kind:<5} command peak RSS", f"{rss:.0f} MB", "target < 200 MB")
        # Bytes of an unchanged Graph room: the same calendar refreshed twice.
        calendar_id = "graph-0000"
        watched = rooms[0]
        # A full read: the room's change tracking forgotten, so it starts again from scratch.
        from connector.models import GraphDeltaState

        GraphDeltaState.objects.filter(mailbox=watched.lower()).delete()
        first = graph.bytes_by_room[watched]
        command_round(data_dir, [calendar_id], 60)
        full = graph.bytes_by_room[watched] - first
        command_round(data_dir, [calendar_id], 60)
        unchanged = graph.bytes_by_room[watched] - first - full
        row(
            "refresh graph bytes, unchanged room / full read",
            f"{unchanged} / {full} bytes",
            f"{unchanged / full:.2f} of a full read" if full else "",
        )
    finally:
        for fake in (graph, identity, ews):
            fake.stop()


def print_table() -> None:
    width = max(len(measure) for measure, _, _ in rows)
    figure_width = max(len(figure) for _, figure, _ in rows)
    line = "-" * (width + figure_width + 60)
    print(f"\n{line}\n{'measure':<{width}}  {'figure':<{figure_width}}  against the limit\n{line}")
    for measure, figure, limit in rows:
        print(f"{measure:<{width}}  {figure:<{figure_width}}  {limit}")
    print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(SECTIONS), help="feed,build,refresh")
    parser.add_argument(
        "--seconds", type=int, default=10, help="wrk's time per kind of feed request"
    )
    parser.add_argument(
        "--feed-rounds", type=int, default=3, help="interleaved rounds sharing --seconds"
    )
    parser.add_argument("--rooms", type=int, default=1000, help="rooms per upstream (even)")
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument(
        "--refresh-cap", type=float, default=60.0, help="seconds before a round is stopped"
    )
    args = parser.parse_args()
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"--only: unknown section(s) {', '.join(sorted(unknown))}")
    data_dir = tempfile.mkdtemp(prefix="ews-calendar-bench-")
    try:
        setup_django(data_dir)
        generator = "wrk (Debian package), sharing the cores with the server"
        print(
            f"ews-calendar benchmark, {os.cpu_count()} cores, load generator: "
            f"{generator if 'feed' in only else '-'}"
        )
        if "feed" in only:
            run_feed(args, data_dir)
        if "build" in only:
            run_build(args)
        if "refresh" in only:
            run_refresh(args, data_dir)
        print_table()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
