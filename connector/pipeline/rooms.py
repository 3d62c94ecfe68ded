"""Reading many rooms at once, as fast as each upstream allows.

A refresh round (and the console) hands ``fetch_rooms`` the rooms to read as
``RoomJob``s: a source, a room and a window. Rooms of one upstream (the same
credentials: ``Source.upstream_key``) have at most that upstream's limit of
requests in flight: ``GRAPH_MAX_CONCURRENCY`` (4, Graph's limit per app
registration) and ``EWS_MAX_CONCURRENCY`` (8 per account) by default, so a
round of 1,000 rooms at 100 ms takes about 1,000 × 100 ms / limit instead of
1,000 × 100 ms. The EWS and Graph sources keep the limit with process-wide
slots held while a request is in flight, so two rounds running at once in one
process never exceed it together; twice as many threads read their rooms
(``readers_for``), so that parsing an answer never leaves a slot idle. An
iCalendar origin is read by at most ICS_CONCURRENCY threads.

Each answer is the room's records or the ``SourceError`` that kept them from
us; one failing room never stops the others. ``iter_rooms`` gives the answers
as they arrive, so that a caller can rebuild a calendar as soon as its rooms
are in while the others are still being read.

Threads and the time budget: each reading thread runs in a copy of the caller's
context, so the console's budget (connector/core/budget.py) bounds every room.

Threads and the database: each reading thread closes its own database
connections when it ends. Inside a transaction (``atomic``) the rooms are read
one after another in the caller's thread, since a reading thread, with its own
connection, could not see what the transaction has not committed yet.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import connections, transaction

from connector.core.errors import SourceError
from connector.core.records import EventRecord, Window
from connector.core.trace import NullTrace, Trace
from connector.pipeline.build import Source, fetch_resource

log = logging.getLogger(__name__)

# iCalendar origins are web servers, not Exchange: a browser's few connections per host.
ICS_CONCURRENCY = 4

RoomAnswer = list[EventRecord] | SourceError


@dataclass(frozen=True)
class RoomJob:
    """One room to read: with which source (hence credentials), over which window."""

    source: Source
    resource: str  # "" = the account's own calendar
    window: Window
    include_body: bool = False
    trace: Trace | None = None  # the room's own steps (the console); None: none kept


def limit_for(upstream_key: str) -> int:
    """How many requests of this upstream may be in flight (the settings' per-upstream limits)."""
    kind = upstream_key.partition(":")[0]
    if kind == "graph":
        return int(settings.GRAPH_MAX_CONCURRENCY)
    if kind == "ews":
        return int(settings.EWS_MAX_CONCURRENCY)
    return ICS_CONCURRENCY


def readers_for(upstream_key: str) -> int:
    """How many threads read this upstream's rooms.

    EWS and Graph hold a place among their limit only while a request is in flight
    (their process-wide slots), not while an answer is parsed into records: twice
    the limit of threads keeps every place busy while answers are parsed. An
    iCalendar origin has no slots of its own: its limit is its threads.
    """
    limit = limit_for(upstream_key)
    kind = upstream_key.partition(":")[0]
    return 2 * limit if kind in ("ews", "graph") else limit


def internal_error(exc: BaseException) -> SourceError:
    return SourceError(
        f"Internal error while reading a room ({exc.__class__.__name__}).",
        code="internal",
        hint="This is a bug in ews-calendar; the server log has the details.",
    )


def read_room(job: RoomJob) -> RoomAnswer:
    """One room's records, or the SourceError that kept them from us (never raises)."""
    try:
        return fetch_resource(
            job.source,
            job.resource,
            job.window,
            include_body=job.include_body,
            trace=job.trace or NullTrace(),
        )
    except SourceError as exc:
        log.warning("reading %s failed: %s", job.resource or "own calendar", exc.message)
        return exc
    except Exception as exc:
        log.exception("reading %s failed", job.resource or "own calendar")
        return internal_error(exc)


def iter_rooms(
    jobs: Sequence[RoomJob],
    *,
    limit: Callable[[str], int] = readers_for,
) -> Iterator[tuple[int, RoomAnswer]]:
    """``(index in jobs, answer)`` for every job, in the order the answers arrive.

    Closing the iterator early lets the reads already running finish and starts
    no new one.
    """
    if not jobs:
        return
    if transaction.get_connection().in_atomic_block:
        for index, job in enumerate(jobs):
            yield index, read_room(job)
        return
    groups: dict[str, deque[int]] = {}
    for index, job in enumerate(jobs):
        groups.setdefault(job.source.upstream_key, deque()).append(index)
    answers: queue.SimpleQueue[tuple[int, RoomAnswer]] = queue.SimpleQueue()
    stop = threading.Event()
    lock = threading.Lock()

    def work(pending: deque[int]) -> None:
        try:
            while not stop.is_set():
                with lock:
                    if not pending:
                        return
                    index = pending.popleft()
                answers.put((index, read_room(jobs[index])))
        finally:
            connections.close_all()  # this thread's own connections

    for key, pending in groups.items():
        for number in range(max(1, min(limit(key), len(pending)))):
            # Each thread runs in a copy of the caller's context: a time budget set by
            # the console (connector/core/budget.py) holds in every reading thread.
            context = contextvars.copy_context()
            threading.Thread(
                target=context.run, args=(work, pending), name=f"rooms-{number}", daemon=True
            ).start()
    try:
        for _ in range(len(jobs)):
            yield answers.get()
    finally:
        stop.set()


def fetch_rooms(
    jobs: Sequence[RoomJob], *, limit: Callable[[str], int] = readers_for
) -> list[RoomAnswer]:
    """Every job's answer, in the order of ``jobs``."""
    answers: list[RoomAnswer | None] = [None] * len(jobs)
    for index, answer in iter_rooms(jobs, limit=limit):
        answers[index] = answer
    return [answer for answer in answers if answer is not None]
