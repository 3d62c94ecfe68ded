"""Prometheus metrics of ews-calendar (served at /metrics).

Counters are incremented where things happen (sources, refresh, feed view).
Web and worker processes share them through prometheus_client's multiprocess
mode when PROMETHEUS_MULTIPROC_DIR is set (``manage.py serve`` sets it).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Histogram

REFRESHES = Counter("ews_calendar_refreshes_total", "Calendar refreshes by outcome", ["outcome"])
REFRESH_DURATION = Histogram(
    "ews_calendar_refresh_duration_seconds",
    "Duration of calendar refreshes",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
FEED_REQUESTS = Counter(
    "ews_calendar_feed_requests_total", "Feed requests by HTTP status", ["status"]
)
TOKEN_REQUESTS = Counter(
    "ews_calendar_token_requests_total",
    "Token requests sent to the identity platform, per app registration",
    ["app_registration"],
)
EXCHANGE_REQUESTS = Counter(
    "ews_calendar_exchange_requests_total",
    "Requests sent to Exchange or Graph, per upstream (server id) and outcome",
    ["upstream", "outcome"],
)

_feed_counters: dict[int, Any] = {}  # status → FEED_REQUESTS's child of that label


def count_feed_request(status: int) -> None:
    """Count one feed answer; its status's child counter is looked up once per process
    (``labels()`` checks and locks on every call, which cost a feed more than the count)."""
    child = _feed_counters.get(status)
    if child is None:
        child = _feed_counters[status] = FEED_REQUESTS.labels(status=str(status))
    child.inc()
