"""Moving a server from EWS in Exchange Online to Microsoft Graph.

EWS in Exchange Online is blocked since 1 October 2026 for tenants that have
not allow-listed the application, and ends on 1 April 2027 (SPEC). A server
that points EWS there is flagged; :func:`switch_to_graph` turns it into a
Graph server in one step, keeping its calendars, resources, filters and
alarms; :func:`compare` first fetches a calendar both ways and lists the
differences event by event.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from accounts.models import AppRegistration
from connector.core.errors import SourceError
from connector.core.records import EventRecord
from connector.core.trace import Trace
from connector.models import Calendar, MailboxState, RefreshStatus, Server
from connector.pipeline.build import (
    BuildResult,
    build_calendar,
    fetch_resource,
    resources_of,
    source_for,
)
from connector.validators import split_url

log = logging.getLogger(__name__)

EWS_BLOCKED_FROM = dt.date(2026, 10, 1)
EWS_ENDS = dt.date(2027, 4, 1)

# Graph of the cloud an EWS host belongs to (national clouds differ).
GRAPH_BASE_URIS = {
    "outlook.office365.com": "https://graph.microsoft.com",
    "outlook.office.com": "https://graph.microsoft.com",
    "outlook.office365.us": "https://graph.microsoft.us",  # GCC High
    "outlook-dod.office365.us": "https://dod-graph.microsoft.us",  # DoD
    "partner.outlook.cn": "https://microsoftgraph.chinacloudapi.cn",  # 21Vianet
}
GRAPH_DEFAULT = "https://graph.microsoft.com"


def retirement_notice(today: dt.date) -> str:
    """What an administrator must know about EWS in Exchange Online, as of today."""
    if today < EWS_BLOCKED_FROM:
        return (
            "EWS in Exchange Online is blocked from 1 October 2026 for every tenant that has "
            "not allow-listed this application, and ends for good on 1 April 2027. "
            "Switch this server to Microsoft Graph."
        )
    if today < EWS_ENDS:
        return (
            "Since 1 October 2026 EWS in Exchange Online is blocked unless your tenant "
            "allow-lists this application (EWSEnabled and an AppID allow list); it ends for "
            "good on 1 April 2027. Switch this server to Microsoft Graph."
        )
    return (
        "EWS in Exchange Online ended on 1 April 2027: this server can no longer read "
        "calendars. Switch it to Microsoft Graph."
    )


def graph_base_uri_for(ews_base_uri: str) -> str:
    """The Graph endpoint of the cloud an EWS base URI belongs to."""
    parts = split_url(ews_base_uri)
    host = ((parts.hostname if parts else None) or "").lower()
    return GRAPH_BASE_URIS.get(host, GRAPH_DEFAULT)


# --- compare: the same calendar through EWS and through Graph -----------------------

# What a screen shows of an event: the fields compared.
COMPARED_FIELDS = (
    "subject",
    "start",
    "end",
    "all_day",
    "location",
    "organizer_name",
    "organizer_email",
    "sensitivity",
    "importance",
    "free_busy",
    "is_cancelled",
    "categories",
)


@dataclass
class Side:
    """One way of reading the calendar: its trace, and the result or the error."""

    label: str
    trace: Trace
    result: BuildResult | None = None
    error: SourceError | None = None

    @property
    def ok(self) -> bool:
        return self.result is not None

    @property
    def event_count(self) -> int:
        return self.result.event_count if self.result is not None else 0


@dataclass(frozen=True)
class EventDiff:
    kind: str  # missing (EWS only) | extra (Graph only) | changed
    resource: str
    when: str
    subject: str
    changes: tuple[tuple[str, str, str], ...] = ()  # field, EWS value, Graph value


@dataclass
class Comparison:
    calendar_id: str
    ews: Side
    graph: Side
    same: int = 0
    diffs: list[EventDiff] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return self.ews.ok and self.graph.ok and not self.diffs

    @property
    def sides(self) -> tuple[Side, Side]:
        return (self.ews, self.graph)

    @property
    def missing_count(self) -> int:
        return sum(1 for diff in self.diffs if diff.kind == "missing")

    @property
    def extra_count(self) -> int:
        return sum(1 for diff in self.diffs if diff.kind == "extra")

    @property
    def changed_count(self) -> int:
        return sum(1 for diff in self.diffs if diff.kind == "changed")


def graph_twin(server: Server, app: AppRegistration, base_uri: str = "") -> Server:
    """An unsaved Graph server with the EWS server's id: what switching would make."""
    return Server(
        pk=server.pk,
        server_id=server.server_id,
        type=Server.Type.GRAPH,
        base_uri=base_uri or graph_base_uri_for(server.base_uri),
        label=server.label,
        app_registration=app,
    )


def _read(label: str, server: Server, calendar: Calendar, now: dt.datetime) -> Side:
    """Fetch every resource through ``server``, then the refresh's own pipeline."""
    side = Side(label=label, trace=Trace())
    try:
        window = calendar.window(now)
        source = source_for(calendar, server=server, trace=side.trace)
        records = {
            resource: fetch_resource(
                source, resource, window, include_body=calendar.include_body, trace=side.trace
            )
            for resource in resources_of(calendar)
        }
        side.result = build_calendar(calendar, records=records, trace=side.trace, now=now)
    except SourceError as exc:
        side.error = exc
    return side


def _value(record: EventRecord, name: str) -> str:
    value = getattr(record, name)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    if isinstance(value, tuple):
        return ", ".join(value)
    return str(value)


def _instant(record: EventRecord) -> str:
    return _value(record, "start")


def _when(record: EventRecord) -> str:
    if record.all_day:
        return f"{_value(record, 'start')} (all day)"
    return f"{_value(record, 'start')} to {_value(record, 'end')}"


def diff_events(ews: list[EventRecord], graph: list[EventRecord]) -> tuple[int, list[EventDiff]]:
    """Match events by room, series UID and start; list what differs.

    Events left unmatched are paired again by room, start and subject: EWS
    and Graph may name a recurring meeting's UID differently, and a screen
    does not show UIDs.
    """

    def by_uid(record: EventRecord) -> tuple[str, str, str]:
        return (record.resource.lower(), record.uid, _instant(record))

    def by_look(record: EventRecord) -> tuple[str, str, str]:
        return (record.resource.lower(), _instant(record), record.subject)

    left = {by_uid(record): record for record in ews}
    right = {by_uid(record): record for record in graph}
    pairs = [(left.pop(key), right.pop(key)) for key in list(left) if key in right]
    spare = {by_look(record): record for record in right.values()}
    for key, record in list(left.items()):
        twin = spare.pop(by_look(record), None)
        if twin is not None:
            pairs.append((record, twin))
            del left[key]
            right = {k: v for k, v in right.items() if v is not twin}
    same = 0
    diffs = []
    for a, b in pairs:
        changes = tuple(
            (name, _value(a, name), _value(b, name))
            for name in COMPARED_FIELDS
            if _value(a, name) != _value(b, name)
        )
        if changes:
            diffs.append(EventDiff("changed", a.resource, _when(a), a.subject, changes))
        else:
            same += 1
    diffs += [EventDiff("missing", r.resource, _when(r), r.subject) for r in left.values()]
    diffs += [EventDiff("extra", r.resource, _when(r), r.subject) for r in right.values()]
    diffs.sort(key=lambda diff: (diff.when, diff.resource, diff.kind))
    return same, diffs


def compare(
    calendar: Calendar,
    app: AppRegistration,
    *,
    base_uri: str = "",
    now: dt.datetime | None = None,
) -> Comparison:
    """Read ``calendar`` through its EWS server and through Graph; saves nothing."""
    now = now or timezone.now()
    server = calendar.server
    ews = _read("EWS", server, calendar, now)
    graph = _read("Microsoft Graph", graph_twin(server, app, base_uri), calendar, now)
    comparison = Comparison(calendar_id=calendar.calendar_id, ews=ews, graph=graph)
    if ews.result is not None and graph.result is not None:
        comparison.same, comparison.diffs = diff_events(
            [event.record for event in ews.result.events],
            [event.record for event in graph.result.events],
        )
    return comparison


# --- switch ---------------------------------------------------------------------------


def switch_to_graph(server: Server, app: AppRegistration, *, base_uri: str = "") -> Server:
    """Turn an EWS server into a Graph server in one step.

    Its id, label, calendars (with their resources, filters and alarms) stay;
    what EWS taught us (version, endpoint, folder ids) goes. Its calendars are
    refreshed at the next dispatch. Raises ValidationError when the result
    would not be a valid Graph server.
    """
    with transaction.atomic():
        server = Server.objects.select_for_update().get(pk=server.pk)
        server.type = Server.Type.GRAPH
        server.base_uri = base_uri or graph_base_uri_for(server.base_uri)
        server.app_registration = app
        server.service_account = None
        server.autodiscover = ""
        server.http_scheme = Server.Scheme.NTLM
        server.ews_version = ""
        server.ews_endpoint = ""
        server.ews_endpoint_discovered = None
        server.full_clean()
        server.save()
        MailboxState.objects.filter(server=server).delete()
        RefreshStatus.objects.filter(calendar__server=server).update(next_refresh=None)
    log.info(
        "Server %s switched from EWS to Microsoft Graph (%s)", server.server_id, server.base_uri
    )
    return server
