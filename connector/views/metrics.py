"""/metrics: Prometheus text format.

The counters and histograms live in connector/metrics.py and are incremented
where things happen; what the database knows (snapshot age per calendar,
failing calendars, secret expiry, worker heartbeat) is computed at scrape
time by :class:`DatabaseCollector`. With PROMETHEUS_MULTIPROC_DIR set, the
counters of every web and worker process are merged
(prometheus_client's multiprocess mode).

Reachable from ICAL_ALLOWED_NETWORKS (where Prometheus usually lives) or by a
logged-in staff member; others get 403.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator

from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from connector.access import in_allowed_networks
from connector.services.expiry import secret_expiries
from connector.services.status import STATUSES, calendar_rows, worker_state


class DatabaseCollector:
    """Gauges read from the database at scrape time."""

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        rows = calendar_rows(now)
        age = GaugeMetricFamily(
            "ews_calendar_snapshot_age_seconds",
            "Age of the calendar's last good snapshot",
            labels=["calendar"],
        )
        period = GaugeMetricFamily(
            "ews_calendar_cache_persistence_seconds",
            "Refresh period of the calendar (cachePersistence)",
            labels=["calendar"],
        )
        events = GaugeMetricFamily(
            "ews_calendar_snapshot_events", "Events in the last good snapshot", labels=["calendar"]
        )
        failing = GaugeMetricFamily(
            "ews_calendar_calendar_failing",
            "1 when the calendar's last refresh failed",
            labels=["calendar"],
        )
        for row in rows:
            if row.age_seconds is not None:
                age.add_metric([row.calendar_id], row.age_seconds)
            if row.event_count is not None:
                events.add_metric([row.calendar_id], row.event_count)
            period.add_metric([row.calendar_id], row.period_seconds)
            failing.add_metric([row.calendar_id], 1 if row.status == "failing" else 0)
        yield from (age, period, events, failing)

        counts = Counter(row.status for row in rows)
        by_status = GaugeMetricFamily(
            "ews_calendar_calendars", "Calendars by status", labels=["status"]
        )
        for name in STATUSES:
            by_status.add_metric([name], counts[name])
        yield by_status
        yield GaugeMetricFamily(
            "ews_calendar_failing_calendars",
            "Calendars whose last refresh failed",
            value=counts["failing"],
        )

        worker = worker_state(now)
        if worker.age_seconds is not None:
            yield GaugeMetricFamily(
                "ews_calendar_worker_heartbeat_age_seconds",
                "Seconds since a background worker last wrote its heartbeat",
                value=worker.age_seconds,
            )

        expiry = GaugeMetricFamily(
            "ews_calendar_secret_expiry_days",
            "Days until the client secret of an app registration expires (negative: expired)",
            labels=["app_registration"],
        )
        expired = GaugeMetricFamily(
            "ews_calendar_secret_expired",
            "1 when the client secret has expired or was refused as expired",
            labels=["app_registration"],
        )
        for item in secret_expiries(timezone.localdate(now)):
            if item.days_left is not None:
                expiry.add_metric([item.name], item.days_left)
            expired.add_metric([item.name], 1 if item.status == "expired" else 0)
        yield from (expiry, expired)


class _ProcessRegistry:
    """This process's own metrics, when not in multiprocess mode."""

    def collect(self) -> Iterator[Metric]:
        return iter(REGISTRY.collect())


def registry() -> CollectorRegistry:
    """A registry for one scrape: process (or merged) metrics plus the database gauges."""
    scrape = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(scrape)
    else:
        scrape.register(_ProcessRegistry())  # type: ignore[arg-type]
    scrape.register(DatabaseCollector())  # type: ignore[arg-type]
    return scrape


def may_scrape(request: HttpRequest) -> bool:
    if in_allowed_networks(request):
        return True
    user = request.user
    return bool(user.is_authenticated and user.is_active and user.is_staff)


@require_safe
@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not may_scrape(request):
        return HttpResponse(
            "Metrics are served to ICAL_ALLOWED_NETWORKS and to logged-in staff.\n",
            status=403,
            content_type="text/plain; charset=utf-8",
        )
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)
