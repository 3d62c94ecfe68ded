"""/healthz: JSON for load balancers and monitoring. No login, no secrets.

503 when this instance cannot do its job: the database is unreachable, or no
background worker has written a heartbeat for HEARTBEAT_MAX_AGE (snapshots
then go stale), or a stored secret cannot be decrypted with FIELD_ENCRYPTION_KEY
(refreshes that need it fail; the problem names it). Failing calendars and
expiring secrets are reported but keep 200: Exchange being down is not a
reason to take the web server out of a load balancer, which would also stop
serving the last good snapshots.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from accounts.keys import undecryptable_secrets
from connector.services.expiry import secret_warnings
from connector.services.status import HEARTBEAT_MAX_AGE, calendar_rows, worker_state

log = logging.getLogger(__name__)


def health() -> tuple[dict[str, Any], bool]:
    """The health document and whether this instance is healthy."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        # Only the class name: a driver's message may carry a host or user name.
        log.error("Health check: database unreachable (%s)", exc.__class__.__name__)
        return {
            "status": "fail",
            "database": "unreachable",
            "problems": ["database unreachable"],
        }, False

    now = timezone.now()
    worker = worker_state(now)
    rows = calendar_rows(now)
    secrets = secret_warnings(timezone.localdate(now))
    problems = []
    unreadable = undecryptable_secrets()
    for problem in unreadable:
        problems.append(f"{problem.describe()} cannot be decrypted (FIELD_ENCRYPTION_KEY)")
    if worker.status != "ok":
        problems.append(
            "no worker heartbeat"
            if worker.last_seen is None
            else f"worker heartbeat {int(worker.age_seconds or 0)} s old"
        )
    healthy = not problems
    document: dict[str, Any] = {
        "status": "ok" if healthy else "fail",
        "database": "ok",
        "worker": {
            "status": worker.status,
            "heartbeat_age_seconds": (
                round(worker.age_seconds, 1) if worker.age_seconds is not None else None
            ),
            "max_age_seconds": int(HEARTBEAT_MAX_AGE.total_seconds()),
            "workers": worker.running,
        },
        "calendars": len(rows),
        "failing_calendars": sum(1 for row in rows if row.status == "failing"),
        "stale_calendars": sum(1 for row in rows if row.status == "stale"),
        "expiring_secrets": sum(1 for item in secrets if item.status == "expiring"),
        "expired_secrets": sum(1 for item in secrets if item.status == "expired"),
        "undecryptable_secrets": len(unreadable),
        "problems": problems,
    }
    return document, healthy


@require_safe
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    document, healthy = health()
    return JsonResponse(document, status=200 if healthy else 503)
