"""Host names the site refused: remembered so that /status/ can name them.

A player set up with the machine's name or address that ALLOWED_HOSTS does not
list gets a plain 400; nobody reads logs, so the status page lists the names
refused in the last day with the fix. One write per name a minute at most.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

from django.db import DatabaseError
from django.db.models import F
from django.utils import timezone

from connector.models import RefusedHost

# How long /status/ keeps showing a refused name.
SHOWN_FOR = dt.timedelta(days=1)
WRITE_EVERY = 60.0  # seconds between two writes for one name, per process

_written: dict[str, float] = {}
_lock = threading.Lock()


def clean_host(raw: str) -> str:
    """The Host header as it may be shown: printable, short."""
    text = "".join(char for char in raw if char.isprintable())
    return text[:200]


def record_refused(host: str) -> None:
    """Count a refused host name (at most one database write a minute per name)."""
    now = time.monotonic()
    with _lock:
        if now - _written.get(host, -WRITE_EVERY) < WRITE_EVERY:
            return
        _written[host] = now
    moment = timezone.now()
    try:
        updated = RefusedHost.objects.filter(name=host).update(
            last_seen=moment, count=F("count") + 1
        )
        if not updated:
            RefusedHost.objects.get_or_create(
                name=host, defaults={"first_seen": moment, "last_seen": moment, "count": 1}
            )
    except DatabaseError:
        pass  # a refused request must never fail for its bookkeeping


def recently_refused(now: dt.datetime | None = None) -> list[RefusedHost]:
    since = (now or timezone.now()) - SHOWN_FOR
    return list(RefusedHost.objects.filter(last_seen__gte=since).order_by("-last_seen"))


def forget() -> None:
    """Forget what this process wrote (tests start as a new process would)."""
    with _lock:
        _written.clear()
