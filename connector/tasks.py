"""django-q2 tasks: thin wrappers around connector.services.refresh, which tests call directly.

``dispatch_refreshes`` runs every minute (connector.schedules): it writes the
worker heartbeat, claims the calendars that are due and queues one
``refresh_group`` task per group of calendars sharing rooms, so that several
groups refresh at once on as many workers as there are.
"""

from __future__ import annotations

import logging
import os
import socket

from django.conf import settings
from django.utils import timezone
from django_q.tasks import async_task

from connector.models import Calendar, WorkerHeartbeat
from connector.services import expiry
from connector.services.refresh import claim_due, refresh_calendars
from connector.services.rounds import plan_rounds
from connector.services.status import HEARTBEAT_KEEP

log = logging.getLogger(__name__)


def worker_name() -> str:
    """One name per cluster: the host and the pid of the cluster that spawned this worker."""
    return f"{socket.gethostname()}:{os.getppid()}"


def heartbeat() -> None:
    """This cluster is alive; the heartbeats of clusters gone for HEARTBEAT_KEEP are dropped.

    Each start of a cluster beats under a new name (its pid), so without the
    pruning every restart would leave a row behind for good. A live cluster
    prunes only others' rows: the newest heartbeat always stays, and /healthz
    can say how old it is when every worker has stopped.
    """
    now = timezone.now()
    name = worker_name()
    WorkerHeartbeat.objects.update_or_create(name=name, defaults={"seen": now, "pid": os.getpid()})
    WorkerHeartbeat.objects.filter(seen__lt=now - HEARTBEAT_KEEP).exclude(name=name).delete()


def dispatch_refreshes() -> str:
    heartbeat()
    calendars = claim_due()
    # One task per round: calendars sharing a room together, a round per server filling
    # its upstream's slots (services.rounds.plan_rounds); workers run rounds side by side.
    groups = plan_rounds(calendars)
    for group in groups:
        ids = [calendar.calendar_id for calendar in group]
        async_task(
            "connector.tasks.refresh_group",
            [calendar.pk for calendar in group],
            task_name=f"refresh {', '.join(ids)}"[:100],
            group="refresh",
        )
    return f"{len(calendars)} calendars due, {len(groups)} refresh tasks queued"


def refresh_group(calendar_pks: list[int]) -> str:
    heartbeat()
    calendars = list(
        Calendar.objects.filter(pk__in=calendar_pks)
        .select_related("server")
        .order_by("calendar_id")
    )
    outcomes = refresh_calendars(calendars, timeout=settings.REFRESH_TIMEOUT)
    for outcome in outcomes:
        log.info("refresh %s", outcome.line())
    return "; ".join(outcome.line() for outcome in outcomes) or "nothing to refresh"


def notify_expiring_secrets() -> str:
    """The daily secret-expiry mail to ADMINS (connector.services.expiry)."""
    return expiry.notify_expiring_secrets()
