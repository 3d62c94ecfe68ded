"""A web worker under a steady mix of player requests keeps its memory flat.

The real web server (gunicorn, one worker with threads) serves, for about half
a minute, a fresh calendar, a live one (``cachePersistence`` 0: every request
refreshes, in a thread of its own) and one whose room Exchange does not know
(502 and the back-off). The worker's resident memory after the warm-up and at
the end must be about the same: a worker that kept something of every request
(refresh threads, calendars, snapshots) would grow by megabytes here.
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.helpers_process import EWS_SETUP, clean_env, ews_env, gunicorn, migrate_and_set_up

SETUP = (
    EWS_SETUP
    + """
add_calendar("fresh", ews, ["room-a@contoso.com"], cache_persistence=300)
add_calendar("live", ews, ["room-b@contoso.com"], cache_persistence=0)
add_calendar("unknown", ews, ["nobody@contoso.com"], cache_persistence=300)
"""
)
CLIENTS = 6
WARM_UP = 8.0  # seconds: imports, connection pools, first refreshes
SOAK = 20.0
# What a worker may gain after its warm-up (allocator noise, caches reaching size).
ALLOWED_GROWTH_KB = 4 * 1024


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def worker_of(master: int) -> int:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def hammer(url: str, seconds: float) -> Counter[tuple[str, int]]:
    """Players asking for the three feeds in turn, for ``seconds``."""
    stop = time.monotonic() + seconds

    def player(number: int) -> Counter[tuple[str, int]]:
        seen: Counter[tuple[str, int]] = Counter()
        names = ("fresh", "live", "unknown")
        turn = number
        with requests.Session() as session:
            while time.monotonic() < stop:
                name = names[turn % len(names)]
                turn += 1
                seen[(name, session.get(f"{url}/ical/{name}.ics", timeout=30).status_code)] += 1
        return seen

    with ThreadPoolExecutor(CLIENTS) as pool:
        return sum(pool.map(player, range(CLIENTS)), Counter())


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_worker_memory_stays_flat_under_a_soak(tmp_path, fake_ews) -> None:  # type: ignore[no-untyped-def]
    env = clean_env(tmp_path, **ews_env(fake_ews), FEED_REFRESH_TIMEOUT="5")
    migrate_and_set_up(env, SETUP)
    fake_ews.faults.latency = 0.02  # a real Exchange takes a while
    with gunicorn(env, tmp_path / "gunicorn.log", workers=1, threads=4) as (url, master):
        worker = worker_of(master.pid)
        warm = hammer(url, WARM_UP)
        before = rss_kb(worker)
        soaked = hammer(url, SOAK)
        after = rss_kb(worker)
    statuses = {status for (_, status) in soaked}
    assert statuses <= {200, 502}, soaked
    assert soaked[("live", 200)] > 50 and soaked[("fresh", 200)] > 50, soaked
    assert soaked[("unknown", 502)] > 50, soaked
    assert not soaked[("unknown", 200)] and not soaked[("live", 502)], soaked
    assert warm[("live", 200)] > 0
    # The unknown room is asked again only after each back-off, not per request.
    assert fake_ews.count_op("FindItem", mailbox="nobody@contoso.com") <= 6
    growth = after - before
    print(dict(soaked))
    print(f"worker RSS {before} kB after warm-up, {after} kB after {SOAK:g} s: {growth:+d} kB")
    assert growth < ALLOWED_GROWTH_KB, f"the worker grew by {growth} kB during the soak"
