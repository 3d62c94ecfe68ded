"""A record of what one run of the pipeline did, step by step, with timings.

The refresh task runs the pipeline without looking at the trace; the test
console, ``manage.py test_calendar`` and ``2ical.php?debug=yes`` show it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Step:
    name: str  # token | connect | fetch | filter | alarms | ics | snapshot
    title: str
    ok: bool = True
    duration: float = 0.0  # seconds
    details: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    hint: str = ""
    code: str = ""  # the upstream's own code of the failure (SourceError.upstream)
    done: bool = False  # ended (ok or failed); False while it runs

    def note(self, text: str) -> None:
        self.details.append(text)


@dataclass
class Trace:
    steps: list[Step] = field(default_factory=list)
    # Told of each step as it ends, from the thread that ran it (the console streams them).
    on_finish: Callable[[Step], None] | None = None

    @contextmanager
    def step(self, name: str, title: str) -> Iterator[Step]:
        """Time a step; an exception marks it failed (with its hint) and goes on up."""
        current = Step(name=name, title=title)
        self.steps.append(current)
        started = time.perf_counter()
        try:
            yield current
        except Exception as exc:
            current.ok = False
            current.error = getattr(exc, "message", None) or str(exc) or exc.__class__.__name__
            current.hint = getattr(exc, "hint", "")
            current.code = getattr(exc, "upstream", "") or getattr(exc, "code", "")
            raise
        finally:
            current.duration = time.perf_counter() - started
            current.done = True
            if self.on_finish is not None:
                self.on_finish(current)

    def child(self) -> Trace:
        """A trace for one part run on another thread (one room of many read at once).

        Its steps are its own, so that the part's failure is found among them, and
        they are listed in this trace too, as they start; its ends are told to
        ``on_finish`` as this trace's are.
        """
        return _ChildTrace(parent=self, on_finish=self.on_finish)

    @property
    def ok(self) -> bool:
        return all(step.ok for step in self.steps)

    @property
    def failed_step(self) -> Step | None:
        return next((step for step in self.steps if not step.ok), None)


@dataclass
class _ChildTrace(Trace):
    parent: Trace | None = None

    @contextmanager
    def step(self, name: str, title: str) -> Iterator[Step]:
        with super().step(name, title) as current:
            if self.parent is not None:
                self.parent.steps.append(current)  # list.append: safe across threads
            yield current


class NullTrace(Trace):
    """A trace that keeps nothing, for the background refresh."""

    def child(self) -> Trace:
        return self

    @contextmanager
    def step(self, name: str, title: str) -> Iterator[Step]:
        yield Step(name=name, title=title)
