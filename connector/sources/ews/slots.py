"""A read's place among its account's EWS_MAX_CONCURRENCY: held while a request is in flight.

EWS_MAX_CONCURRENCY bounds the requests an account has in flight at Exchange,
not the work this process does around them. A read (``EwsSource.fetch``)
takes its place before it connects and leaves it as soon as the answer to
FindItem has arrived in full (``protocol.SchemaOfTheServer``): the answer is
parsed and turned into records while another room's request uses the place.
A further request of the same read (a half of a view too big, the bodies)
takes a place again first, within the read's deadline.
"""

from __future__ import annotations

import contextvars
import threading
import time

from connector.core.errors import SourceError


class Slot:
    """One read's claim on its account's places (a BoundedSemaphore of the pool)."""

    def __init__(self, places: threading.BoundedSemaphore, deadline: float, server: str) -> None:
        self.places = places
        self.deadline = deadline
        self.server = server
        self.held = False

    def take(self) -> None:
        """Hold a place (no-op when held); SourceError when none came free before the deadline."""
        if self.held:
            return
        if not self.places.acquire(timeout=max(self.deadline - time.monotonic(), 0)):
            raise SourceError(
                f"Too many reads of {self.server} are already running.",
                code="concurrency",
                hint="Every slot for this account (EWS_MAX_CONCURRENCY) stayed busy for the "
                "whole refresh: Exchange is slow. Raise REFRESH_TIMEOUT or cachePersistence.",
                retryable=True,
            )
        self.held = True

    def leave(self) -> None:
        """Give the place back (no-op when not held)."""
        if self.held:
            self.held = False
            self.places.release()


# The slot of the read running in this thread (or context), for the services to leave and
# take again around their requests.
current: contextvars.ContextVar[Slot | None] = contextvars.ContextVar("ews_slot", default=None)


def take() -> None:
    slot = current.get()
    if slot is not None:
        slot.take()


def leave() -> None:
    slot = current.get()
    if slot is not None:
        slot.leave()
