"""Benchmark: what a refresh costs Exchange, and how fast feeds are served.

Runs against the fake Exchange of tests/fakes on 127.0.0.1 (nothing else is
contacted) with its own temporary DATA_DIR, and prints measured figures:

1. Refresh rounds of N rooms through EWS (NTLM): the first round (which learns
   the server version), a warm round, and a round in a new
   process (the learned state comes from the database): wall time and SOAP
   requests by operation.
2. The feed under load: gunicorn serving /ical/<id>.ics from fresh snapshots,
   measured with wrk (Debian package) when installed, else with a thread pool
   of Python clients: requests per second and latency percentiles, plus the
   number of Exchange requests the load caused (must be 0).

    python benchmarks/feed_and_refresh.py --rooms 40 --latency-ms 20 --seconds 10
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAKE_PASSWORD = "fake-bench"  # the fake Exchange's, never a real one
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def setup_django(data_dir: str) -> None:
    os.environ["DATA_DIR"] = data_dir
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "connector.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def ops(fake: object, before: Counter[str]) -> Counter[str]:
    now = Counter(record.operation for record in fake.ops)  # type: ignore[attr-defined]
    return now - before


def run_refresh_rounds(args: argparse.Namespace) -> tuple[object, list[str]]:
    import datetime as dt

    from accounts.models import ServiceAccount
    from connector.models import Calendar, Filter, Resource, Server
    from connector.services.refresh import refresh_calendars
    from connector.sources.ews import reset_pool
    from tests.fakes.base import FakeCA
    from tests.fakes.ews import FakeExchange
    from tests.fakes.rooms import build_rooms

    FakeCA.get().trust()
    template = build_rooms(dt.date.today())["room-a@contoso.com"]
    rooms = [f"room-{n:03d}@contoso.com" for n in range(args.rooms)]
    fake = FakeExchange()
    fake.add_user("delegate@contoso.com", FAKE_PASSWORD, "ntlm", rooms=rooms)
    for room in rooms:
        fake.add_mailbox(room, list(template))
    fake.start()
    fake.faults.latency = args.latency_ms / 1000

    account = ServiceAccount.objects.create(
        name="bench", username="delegate@contoso.com", password=FAKE_PASSWORD
    )
    server = Server.objects.create(
        server_id="bench", type="ews", base_uri=fake.url, service_account=account
    )
    calendar_ids = []
    for number, room in enumerate(rooms):
        calendar = Calendar.objects.create(
            calendar_id=f"room{number:03d}", server=server, cache_persistence=3600
        )
        Filter.objects.create(calendar=calendar)
        Resource.objects.create(calendar=calendar, address=room)
        calendar_ids.append(calendar.calendar_id)
    # A lobby screen showing every room: its rooms are fetched once, with the others.
    lobby = Calendar.objects.create(calendar_id="lobby", server=server, cache_persistence=3600)
    Filter.objects.create(calendar=lobby)
    for position, room in enumerate(rooms):
        Resource.objects.create(calendar=lobby, address=room, position=position)
    calendar_ids.append("lobby")

    print(
        f"== Refresh rounds: {args.rooms} rooms, {len(calendar_ids)} calendars, "
        f"{args.latency_ms} ms added per Exchange answer"
    )
    for label in (
        "first round (learns the server version)",
        "warm round",
        "new process (version and state from the database)",
    ):
        if label.startswith("new process"):
            reset_pool()
            fake.forget_connections()
        before = Counter(record.operation for record in fake.ops)
        started = time.perf_counter()
        outcomes = refresh_calendars(Calendar.objects.order_by("calendar_id"))
        elapsed = time.perf_counter() - started
        failed = [outcome for outcome in outcomes if not outcome.ok]
        counts = ops(fake, before)
        print(
            f"  {label}: {elapsed:.2f} s, {len(outcomes) - len(failed)} ok / {len(failed)} "
            f"failed, SOAP requests {dict(sorted(counts.items()))} "
            f"({sum(counts.values())} total for {args.rooms} rooms)"
        )
    return fake, calendar_ids


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


def python_load(urls: list[str], seconds: float, clients: int) -> tuple[int, list[float], int]:
    deadline = time.monotonic() + seconds
    latencies: list[float] = []
    errors = 0

    def client(offset: int) -> tuple[list[float], int]:
        mine: list[float] = []
        bad = 0
        n = offset
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(urls[n % len(urls)], timeout=10) as resp:
                    resp.read()
                    if resp.status != 200:
                        bad += 1
            except OSError:
                bad += 1
            mine.append(time.perf_counter() - started)
            n += 1
        return mine, bad

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        for mine, bad in pool.map(client, range(clients)):
            latencies.extend(mine)
            errors += bad
    return len(latencies), latencies, errors


def run_feed_load(args: argparse.Namespace, data_dir: str, fake: object, ids: list[str]) -> None:
    port = free_port()
    env = {**os.environ, "DATA_DIR": data_dir, "DJANGO_SETTINGS_MODULE": "connector.settings"}
    web = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "connector.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(args.web_workers),
            "--threads",
            "4",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/ical/{ids[0]}.ics", 30)
        soap_before = len(fake.ops)  # type: ignore[attr-defined]
        print(
            f"== Feed load: gunicorn {args.web_workers} workers x 4 threads, "
            f"{args.clients} clients, {args.seconds} s, fresh snapshots"
        )
        wrk = shutil.which("wrk")
        if wrk and not args.python_client:
            script = Path(data_dir) / "paths.lua"
            paths = ", ".join(f'"/ical/{calendar_id}.ics"' for calendar_id in ids)
            script.write_text(
                f"local paths = {{{paths}}}\nlocal i = 0\n"
                "request = function()\n  i = i + 1\n"
                "  return wrk.format('GET', paths[(i % #paths) + 1])\nend\n"
            )
            result = subprocess.run(
                [
                    wrk,
                    "-t2",
                    f"-c{args.clients}",
                    f"-d{args.seconds}s",
                    "--latency",
                    "-s",
                    str(script),
                    base,
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            print("  wrk " + result.stdout.strip().replace("\n", "\n  "))
        else:
            urls = [f"{base}/ical/{calendar_id}.ics" for calendar_id in ids]
            count, latencies, errors = python_load(urls, args.seconds, args.clients)
            latencies.sort()
            cuts = statistics.quantiles(latencies, n=100)
            print(
                f"  {count / args.seconds:.0f} requests/s, {errors} errors, latency "
                f"p50 {cuts[49] * 1000:.1f} ms, p95 {cuts[94] * 1000:.1f} ms, "
                f"p99 {cuts[98] * 1000:.1f} ms"
            )
        # Conditional GET: what a player polling an unchanged feed costs.
        with urllib.request.urlopen(f"{base}/ical/{ids[0]}.ics") as response:
            etag = response.headers["ETag"]
            size = len(response.read())
        request = urllib.request.Request(
            f"{base}/ical/{ids[0]}.ics", headers={"If-None-Match": etag}
        )
        timings = []
        for _ in range(200):
            started = time.perf_counter()
            try:
                urllib.request.urlopen(request)
            except urllib.error.HTTPError as exc:
                assert exc.code == 304, exc.code
            timings.append(time.perf_counter() - started)
        print(
            f"  conditional GET (304) of a {size}-byte feed: median "
            f"{statistics.median(timings) * 1000:.2f} ms over 200 requests"
        )
        caused = len(fake.ops) - soap_before  # type: ignore[attr-defined]
        print(f"  Exchange requests caused by the feed load: {caused}")
    finally:
        web.terminate()
        web.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rooms", type=int, default=40)
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--python-client", action="store_true", help="do not use wrk")
    args = parser.parse_args()
    data_dir = tempfile.mkdtemp(prefix="ews-calendar-bench-")
    try:
        setup_django(data_dir)
        fake, ids = run_refresh_rounds(args)
        try:
            run_feed_load(args, data_dir, fake, ids)
        finally:
            fake.stop()  # type: ignore[attr-defined]
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
