"""Claims: who is refreshing a calendar right now, so that nobody else asks Exchange too.

A claim is taken with a conditional UPDATE of ``RefreshStatus`` that must
change exactly one row, in any number of processes and hosts. It names its
owner (``host:pid:start``) and is a short *lease*: while the round runs, a
keeper thread renews ``refreshing_until`` every few seconds. So a claim whose
owner died (``kill -9`` of a worker, a restarted web server) never blocks the
feeds for long: on the same host the owner's pid is looked at and the claim
is taken over at once; from another host, once the lease ran out unrenewed.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from django.db import connections
from django.db.models import Q
from django.utils import timezone

from connector.models import Calendar, RefreshStatus

log = logging.getLogger(__name__)

# A claim not renewed for this long belongs to a process that is gone.
LEASE = dt.timedelta(seconds=15)
# How often a live owner renews its claims.
RENEW_EVERY = LEASE.total_seconds() / 3
# How often a request waiting for another's refresh looks again (seconds).
WAIT_POLL = 0.1
# Calendars per statement when many are claimed or released at once (SQLite's older
# builds take at most 999 parameters).
BATCH = 500

_claiming = threading.Lock()


def _start_time(pid: int) -> str:
    """The process's start (clock ticks since boot, from /proc): tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # The command name (field 2) may hold spaces: count fields after its closing ')'.
    return stat.rpartition(")")[2].split()[19]


@cache
def _host() -> str:
    return socket.gethostname()


def owner() -> str:
    """This process, as claims name it: host, pid and start time."""
    pid = os.getpid()
    return f"{_host()}:{pid}:{_start_time(pid)}"


def owner_is_gone(name: str) -> bool:
    """True when ``name`` is a process of this host that no longer runs.

    Only this host's processes can be looked at; for another host's claim the
    answer is False, and its lease decides.
    """
    parts = name.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False  # an old claim without an owner: wait for its expiry
    host, pid, started = parts[0], int(parts[1]), parts[2]
    if host != _host():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    return bool(started) and _start_time(pid) not in ("", started)


def status_pk(calendar: Calendar) -> int:
    status, _ = RefreshStatus.objects.get_or_create(calendar=calendar)
    return status.pk


def status_pks(calendars: Sequence[Calendar]) -> dict[int, int]:
    """Each calendar's RefreshStatus pk (by calendar pk), made where missing: two queries."""
    wanted = [calendar.pk for calendar in calendars]
    found = _status_pks(wanted)
    missing = [pk for pk in wanted if pk not in found]
    if missing:
        RefreshStatus.objects.bulk_create(
            [RefreshStatus(calendar_id=pk) for pk in missing], ignore_conflicts=True
        )
        found.update(_status_pks(missing))
    return found


def _status_pks(calendar_pks: list[int]) -> dict[int, int]:
    found: dict[int, int] = {}
    for start in range(0, len(calendar_pks), BATCH):
        found.update(
            RefreshStatus.objects.filter(calendar_id__in=calendar_pks[start : start + BATCH])
            .values_list("calendar_id", "pk")
            .iterator()
        )
    return found


def claim(calendar: Calendar, *, now: dt.datetime) -> bool:
    """Take the calendar for a refresh unless a live process holds it; exactly one winner."""
    return bool(claim_all([calendar], now=now))


def claim_all(calendars: Sequence[Calendar], *, now: dt.datetime) -> dict[int, int]:
    """Take each calendar a live process does not hold: ``{calendar pk: status pk}`` of those.

    One conditional UPDATE for them all (each row changes for exactly one claimant,
    in any number of processes); then a claim whose owner is gone is taken over,
    calendar by calendar.
    """
    pks = status_pks(calendars)
    me = owner()
    until = now + LEASE
    free = Q(refreshing_until__isnull=True) | Q(refreshing_until__lt=now)
    statuses = list(pks.values())
    taken: set[int] = set()
    with _claiming:  # this process's rows with this ``until`` are this call's
        for start in range(0, len(statuses), BATCH):
            chunk = statuses[start : start + BATCH]
            RefreshStatus.objects.filter(free, pk__in=chunk).update(
                refreshing_until=until, refreshing_by=me
            )
            taken.update(
                RefreshStatus.objects.filter(
                    pk__in=chunk, refreshing_by=me, refreshing_until=until
                ).values_list("pk", flat=True)
            )
    claimed = {}
    for calendar in calendars:
        pk = pks[calendar.pk]
        if pk in taken or _take_over(calendar, pk, me, until):
            claimed[calendar.pk] = pk
    return claimed


def _take_over(calendar: Calendar, pk: int, me: str, until: dt.datetime) -> bool:
    """Take a claim whose owner is gone (a killed worker); False while it lives."""
    held = RefreshStatus.objects.filter(pk=pk).values("refreshing_by", "refreshing_until").first()
    if held is None or held["refreshing_until"] is None:
        return False
    if not owner_is_gone(held["refreshing_by"]):
        return False
    log.info("taking over the refresh claim of %s from %s", calendar, held["refreshing_by"])
    return (
        RefreshStatus.objects.filter(pk=pk, **held).update(refreshing_until=until, refreshing_by=me)
        == 1
    )


def release(calendar: Calendar) -> None:
    release_all([calendar])


def release_all(calendars: Sequence[Calendar]) -> None:
    """Let go of this process's claims of the calendars (one UPDATE per BATCH)."""
    pks = [calendar.pk for calendar in calendars]
    me = owner()
    for start in range(0, len(pks), BATCH):
        RefreshStatus.objects.filter(
            calendar_id__in=pks[start : start + BATCH], refreshing_by=me
        ).update(refreshing_until=None, refreshing_by="")


def is_claimed(calendar: Calendar, now: dt.datetime) -> bool:
    """Held by a process that is still there (a dead owner's claim does not count)."""
    held = (
        RefreshStatus.objects.filter(calendar=calendar, refreshing_until__gte=now)
        .values_list("refreshing_by", flat=True)
        .first()
    )
    return held is not None and not owner_is_gone(held)


def wait_for_release(calendar: Calendar, timeout: float) -> bool:
    """Wait (bounded) for another's refresh of this calendar to end; True when it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_claimed(calendar, timezone.now()):
            return True
        time.sleep(WAIT_POLL)
    return not is_claimed(calendar, timezone.now())


@contextmanager
def kept(calendars: Iterable[Calendar]) -> Iterator[None]:
    """Renew the leases of these claimed calendars until the block ends."""
    pks = [calendar.pk for calendar in calendars]
    stop = threading.Event()

    def renew() -> None:
        try:
            while not stop.wait(RENEW_EVERY):
                RefreshStatus.objects.filter(calendar_id__in=pks, refreshing_by=owner()).update(
                    refreshing_until=timezone.now() + LEASE
                )
        except Exception:
            log.exception("could not renew refresh claims")
        finally:
            connections.close_all()  # this thread's own connections

    keeper = threading.Thread(target=renew, name="refresh-claims", daemon=True)
    if pks:
        keeper.start()
    try:
        yield
    finally:
        stop.set()
        if pks:
            keeper.join()
