"""The server form's "Test connection": read one room with settings not saved yet.

Like the test console (and healthchecks' "send test notification"), it runs the
real thing on an unsaved object: the same source and fetch as a refresh
(``connector.pipeline.build``), for one resource and one day, and reports in
plain words what happened, with the upstream's code and a hint. Nothing is saved:
not the server, not a snapshot (the EWS source keeps no pooled connection and the
iCalendar source no cached copy for an unsaved server).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.utils import timezone

from connector.core.errors import SourceError
from connector.core.trace import Trace
from connector.models import Calendar, Server
from connector.pipeline.build import fetch_resource, source_for

log = logging.getLogger(__name__)

# Fields of a server that make a connection; copied onto a fresh, unsaved Server.
_SETTINGS = (
    "server_id",
    "type",
    "label",
    "base_uri",
    "autodiscover",
    "http_scheme",
    "service_account",
    "app_registration",
    "ews_version",
    "ews_endpoint",
)


@dataclass(frozen=True)
class ConnectionTest:
    ok: bool
    headline: str  # plain words: what happened
    code: str  # the upstream's or our stable code ("" when it worked)
    hint: str
    step: str  # the step that failed: token, connect, autodiscover, fetch ("" when ok)
    resource: str
    items: int
    seconds: float
    details: tuple[str, ...]  # what each step noted, in order


def unsaved_copy(server: Server) -> Server:
    """The server's settings on a new object with no primary key, which nothing saves."""
    copy = Server(**{name: getattr(server, name) for name in _SETTINGS})
    if server.pk is None or server.base_uri != _saved_base_uri(server):
        # A changed address: what the saved row learned there does not apply.
        copy.ews_version = ""
        copy.ews_endpoint = ""
    return copy


def _saved_base_uri(server: Server) -> str | None:
    return Server.objects.filter(pk=server.pk).values_list("base_uri", flat=True).first()


def run_connection_test(server: Server, resource: str) -> ConnectionTest:
    """Read ``resource`` (a room; "" for the account's own calendar) through ``server``."""
    candidate = unsaved_copy(server)
    probe = Calendar(calendar_id="connection-test", server=candidate, request_window=1)
    trace = Trace()
    started = time.monotonic()
    resource = resource.strip()
    try:
        source = source_for(probe, server=candidate, trace=trace)
        records = fetch_resource(
            source, resource, probe.window(timezone.now()), include_body=False, trace=trace
        )
    except SourceError as exc:
        return ConnectionTest(
            ok=False,
            headline=exc.message,
            code=exc.code,
            hint=exc.hint,
            step=exc.step,
            resource=resource,
            items=0,
            seconds=time.monotonic() - started,
            details=_details(trace),
        )
    except Exception as exc:  # a bug must still answer the form, and be logged
        log.exception("connection test of %s failed unexpectedly", candidate.server_id)
        return ConnectionTest(
            ok=False,
            headline=f"The test stopped on an unexpected error ({exc.__class__.__name__}).",
            code=exc.__class__.__name__,
            hint="This is a fault of ews-calendar: the server log has the details.",
            step="",
            resource=resource,
            items=0,
            seconds=time.monotonic() - started,
            details=_details(trace),
        )
    where = resource or "the account's own calendar"
    return ConnectionTest(
        ok=True,
        headline=f"Connected and read {where}: {len(records)} events today. Nothing was saved.",
        code="",
        hint="",
        step="",
        resource=resource,
        items=len(records),
        seconds=time.monotonic() - started,
        details=_details(trace),
    )


def _details(trace: Trace) -> tuple[str, ...]:
    lines = []
    for step in trace.steps:
        state = "ok" if step.ok else "failed"
        lines.append(f"{step.title}: {state} in {step.duration:.2f} s")
        lines.extend(f"  {note}" for note in step.details)
    return tuple(lines)
