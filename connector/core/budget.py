"""A time budget for one interactive check (the test console), read by every source.

The background refresh bounds a fetch by REFRESH_TIMEOUT and lets exchangelib
and Graph wait out what Exchange asks (ErrorServerBusy/BackOffMilliseconds,
Retry-After). The console must answer a person within seconds whatever Exchange
does, so it runs its fetch inside ``limited(seconds)``: the sources then shorten
their deadlines and request time-outs to the budget and try a busy Exchange once,
reporting the back-off it asked for instead of waiting (``retries`` is False).

A context variable: set in the thread that fetches, unseen by every other.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    deadline: float  # time.monotonic() by which the answer is due
    retries: bool  # False: a busy or failing upstream is tried once

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


_current: ContextVar[Budget | None] = ContextVar("ews_calendar_budget", default=None)


def current() -> Budget | None:
    return _current.get()


@contextmanager
def limited(seconds: float, *, retries: bool = False) -> Iterator[Budget]:
    """Everything fetched inside answers within ``seconds`` (as far as the sources can)."""
    budget = Budget(deadline=time.monotonic() + seconds, retries=retries)
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)


def retries_allowed() -> bool:
    budget = current()
    return budget is None or budget.retries


def deadline(default: float) -> float:
    """The earlier of ``default`` (a time.monotonic()) and the budget's deadline."""
    budget = current()
    return default if budget is None else min(default, budget.deadline)


def timeout(default: float, *, floor: float = 0.5) -> float:
    """A request time-out: ``default`` seconds, or what is left of the budget if less."""
    budget = current()
    if budget is None:
        return default
    return max(min(default, budget.remaining()), floor)
