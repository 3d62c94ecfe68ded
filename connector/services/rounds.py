"""Rounds: how a process splits the calendars it refreshes so that each upstream's
slots stay busy.

A round (``refresh.refresh_calendars``) reads every room it needs concurrently,
up to the upstream's limit. ``plan_rounds`` puts calendars that share a room in
the same round (so the room is read once) and packs the calendars of one server
into rounds of up to ROOMS_PER_SLOT rooms per slot; ``refresh_in_rounds`` runs
them, several at once (``manage.py refresh_calendars``); the background dispatch
queues one django-q2 task per round (connector/tasks.py).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import connections, transaction

from connector.models import Calendar, Server
from connector.services.refresh import RefreshOutcome, refresh_calendars, room_keys

# A round reads at most this many rooms per slot of its upstream (EWS_MAX_CONCURRENCY,
# GRAPH_MAX_CONCURRENCY): 400 EWS or 200 Graph rooms by default, 5 s at 100 ms an answer
# and well within REFRESH_TIMEOUT at 1 s, so a round fits a django-q2 task's time-out.
ROOMS_PER_SLOT = 50
# Rounds a process runs at once (manage.py refresh_calendars): the sources' process-wide
# slots keep each upstream at its limit whatever the number of rounds.
PARALLEL_ROUNDS = 4


def _slots(calendar: Calendar) -> int:
    if calendar.server.type == Server.Type.GRAPH:
        return int(settings.GRAPH_MAX_CONCURRENCY)
    if calendar.server.type == Server.Type.EWS:
        return int(settings.EWS_MAX_CONCURRENCY)
    return 4


def plan_rounds(calendars: list[Calendar]) -> list[list[Calendar]]:
    """The calendars as rounds: those sharing a room in one round, one server per round.

    Calendars that share a room (group_by_rooms) always go together, so that the room is
    read once; groups of one server are packed into rounds of at most ROOMS_PER_SLOT
    rooms per slot of its upstream, so that a round keeps every slot busy (one group of
    a calendar's two rooms alone would leave six of eight idle).
    """
    rounds: list[list[Calendar]] = []
    open_rounds: dict[int, tuple[list[Calendar], set[tuple[int, str, str]]]] = {}
    for group in group_by_rooms(calendars):
        server_id = group[0].server_id
        keys = set().union(*(room_keys(calendar) for calendar in group))
        limit = _slots(group[0]) * ROOMS_PER_SLOT
        current = open_rounds.get(server_id)
        if current is not None and len(current[1] | keys) <= limit:
            current[0].extend(group)
            current[1].update(keys)
            continue
        members = list(group)
        rounds.append(members)
        open_rounds[server_id] = (members, set(keys))
    return rounds


def refresh_in_rounds(calendars: list[Calendar]) -> list[RefreshOutcome]:
    """Refresh ``calendars`` in rounds (plan_rounds), up to PARALLEL_ROUNDS at once.

    One outcome per calendar, in the order given. Each round may take REFRESH_TIMEOUT.
    """
    rounds = plan_rounds(calendars)

    def run(members: list[Calendar]) -> list[RefreshOutcome]:
        try:
            return refresh_calendars(members, timeout=settings.REFRESH_TIMEOUT)
        finally:
            connections.close_all()  # this thread's own connections

    if len(rounds) <= 1 or transaction.get_connection().in_atomic_block:
        # One round, or a transaction other threads could not see into: one by one.
        timeout = settings.REFRESH_TIMEOUT
        results = [refresh_calendars(members, timeout=timeout) for members in rounds]
    else:
        with ThreadPoolExecutor(max_workers=PARALLEL_ROUNDS, thread_name_prefix="round") as pool:
            results = list(pool.map(run, rounds))
    by_pk = {
        calendar.pk: outcome
        for members, outcomes in zip(rounds, results, strict=True)
        for calendar, outcome in zip(members, outcomes, strict=True)
    }
    return [by_pk[calendar.pk] for calendar in calendars]


def group_by_rooms(calendars: list[Calendar]) -> list[list[Calendar]]:
    """Calendars that share a room, directly or through others, form one group (one round)."""
    groups: list[tuple[set[tuple[int, str, str]], list[Calendar]]] = []
    for calendar in calendars:
        keys = room_keys(calendar)
        joined = [group for group in groups if group[0] & keys]
        merged_keys = set(keys).union(*(group[0] for group in joined))
        merged = [member for group in joined for member in group[1]] + [calendar]
        groups = [group for group in groups if all(group is not j for j in joined)]
        groups.append((merged_keys, merged))
    return [members for _, members in groups]
