"""Room calendars through Microsoft Graph: ``/users/{room}/calendarView/delta``.

App-only OAuth2 (``Calendars.Read`` application permission). A room is read
with change tracking (https://learn.microsoft.com/graph/delta-query-events):
the first refresh of a window runs a full round of ``calendarView/delta`` and
keeps its ``@odata.deltaLink`` and the room's events (``delta.py``); every
refresh after sends that link and gets only what changed, so an unchanged room
costs one small request. A new window (a new day) starts a new round; a token
Graph no longer honours (``410 Gone``, ``syncStateNotFound``,
``resyncRequired``, a 400) or an answer that does not fit what is kept starts
one too. Where Graph refuses change tracking altogether, the room is read with
a plain ``calendarView``. Every page is followed to the end: Graph lists the
occurrences of recurring meetings after the single events.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import quote

from django.conf import settings

from accounts.models import AppRegistration
from connector.core import budget
from connector.core.errors import SourceError
from connector.core.trace import NullTrace, Trace
from connector.models.servers import GRAPH_DEFAULT_BASE_URI
from connector.sources.graph import delta
from connector.sources.graph.client import GraphClient, Pages, Refused, origin
from connector.sources.graph.errors import RESYNC_CODES, http_error
from connector.sources.graph.mapping import SELECT, graph_param, record

if TYPE_CHECKING:
    from connector.core.records import EventRecord, Window
    from connector.models import Calendar, Server

PAGE_SIZE = 100  # $top / odata.maxpagesize: fewer pages than Graph's default of 10
# Delta answers carry every property ($select is not supported there), the body too:
# as text it is smaller than as HTML.
DELTA_HEADERS = {
    "Prefer": 'outlook.timezone="UTC", outlook.body-content-type="text", '
    f"odata.maxpagesize={PAGE_SIZE}",
    "Accept": "application/json",
}


class GraphSource:
    """Reads room mailboxes' calendars through Microsoft Graph."""

    def __init__(
        self,
        server: Server,
        *,
        calendar: Calendar | None = None,
        trace: Trace | None = None,
        deadline: float | None = None,
    ) -> None:
        self.server = server
        self.app = server.app_registration
        self.trace = trace or NullTrace()
        self.base = (server.base_uri or GRAPH_DEFAULT_BASE_URI).rstrip("/")
        # time.monotonic() after which no retry is waited for; None: REFRESH_TIMEOUT per fetch
        self.deadline = deadline
        # The calendar's own username/password mean nothing to Graph: the app reads.
        app_key = self.app.pk if self.app is not None else "none"
        self.upstream_key = f"graph:{self.base}:{app_key}"
        # A delegated sign-in reads as its account (Calendars.Read.Shared), for the hints.
        delegated = self.app is not None and self.app.flow == AppRegistration.Flow.DELEGATED
        self.delegate = self.app.account if delegated and self.app is not None else ""

    # -- the one public method ------------------------------------------------------
    def fetch(
        self, resource: str, window: Window, *, include_body: bool = False
    ) -> list[EventRecord]:
        title = f"Graph calendarView of {resource or '(no resource)'}"
        if self.app is None:
            self._refuse(
                title,
                SourceError(
                    f"Server {self.server.server_id} has no app registration.",
                    code="no-credentials",
                    hint="Microsoft Graph needs an app registration with the Calendars.Read "
                    "application permission: choose one on the server.",
                    step="connect",
                ),
            )
        if not resource:
            self._refuse(
                title,
                SourceError(
                    "Microsoft Graph with app-only access has no calendar of its own.",
                    code="no-resource",
                    hint="Give the room mailbox's SMTP address as a resource of the calendar "
                    "(e.g. room-101@contoso.com).",
                    step="fetch",
                ),
            )
        client = GraphClient(
            self.app,
            base=self.base,
            server_id=self.server.server_id,
            trace=self.trace,
            deadline=budget.deadline(self.deadline or time.monotonic() + settings.REFRESH_TIMEOUT),
            note=lambda text: None,
        )
        client.token()  # the token step comes before the fetch step
        with self.trace.step("fetch", title) as step:
            client.note = step.note
            try:
                events, how, pages = self._read(client, resource, window, include_body)
            except SourceError as error:
                error.resource = resource
                raise
            records = [record(event, resource, include_body) for event in events]
            step.note(
                f"{how}: {pages} page(s), {len(records)} item(s), {client.requests} request(s), "
                f"{client.bytes} bytes"
            )
            step.data.update(
                pages=pages,
                items=len(records),
                requests=client.requests,
                bytes=client.bytes,
                read=how,
            )
            return records

    def _refuse(self, title: str, error: SourceError) -> NoReturn:
        """Raise an error found before any request, recorded as a failed step."""
        with self.trace.step("fetch", title):
            raise error

    # -- reading ----------------------------------------------------------------------
    def _read(
        self, client: GraphClient, resource: str, window: Window, include_body: bool
    ) -> tuple[list[dict[str, Any]], str, int]:
        """The room's events, how they were read, and the number of pages."""
        assert self.app is not None
        reader = f"{self.upstream_key}:{self.app.client_id}"
        pages = 0
        kept = delta.load(self.server, resource, window, reader)
        # A new round keeps descriptions when this calendar or the last round had them, so
        # calendars with and without them, sharing the room, do not take turns re-reading it.
        with_bodies = include_body or (kept is not None and kept.with_bodies)
        if kept is not None and include_body and not kept.with_bodies:
            client.note("The kept events have no descriptions, which are asked for now.")
            kept = None
        if kept is not None and origin(kept.delta_link) != origin(self.base):
            kept = None  # the base URI changed: its links go elsewhere
        if kept is not None:
            try:
                found = client.read(kept.delta_link, None, DELTA_HEADERS, resource)
                pages += found.pages
                if found.delta_link is None:
                    raise delta.Inconsistent("the round ended without a deltaLink")
                events = delta.apply(kept.events, found.items, with_bodies=kept.with_bodies)
            except Refused as refused:
                if not (refused.status in (400, 410) or refused.code.lower() in RESYNC_CODES):
                    raise http_error(
                        refused.response, resource, self.app.client_id, delegate=self.delegate
                    ) from None
                client.note(
                    f"Graph no longer takes the delta token of {resource} "
                    f"({refused.status} {refused.code}): reading the room in full."
                )
            except delta.Inconsistent as exc:
                client.note(f"Graph's changes do not fit the kept events ({exc}): reading in full.")
            else:
                delta.save(
                    self.server,
                    resource,
                    window,
                    reader=reader,
                    delta_link=found.delta_link,
                    events=events,
                    with_bodies=kept.with_bodies,
                    previous=kept,
                )
                return list(events.values()), f"{len(found.items)} change(s) since", pages
        url = f"{self.base}/v1.0/users/{quote(resource)}/calendarView/delta"
        params = {
            "startDateTime": graph_param(window.start),
            "endDateTime": graph_param(window.end),
        }
        try:
            found = client.read(url, params, DELTA_HEADERS, resource)
            pages += found.pages
            events = delta.apply({}, found.items, with_bodies=with_bodies)
        except Refused as refused:
            if refused.status not in (400, 501):
                raise http_error(
                    refused.response, resource, self.app.client_id, delegate=self.delegate
                ) from None
            client.note(
                f"Graph refused change tracking for {resource} ({refused.status} "
                f"{refused.code}): reading its calendar view."
            )
        except delta.Inconsistent as exc:
            client.note(f"Graph's change tracking answered oddly ({exc}): reading the view.")
        else:
            if found.delta_link is not None:
                delta.save(
                    self.server,
                    resource,
                    window,
                    reader=reader,
                    delta_link=found.delta_link,
                    events=events,
                    with_bodies=with_bodies,
                    previous=None,
                )
            return list(events.values()), "full read, change tracking started", pages
        view = self._read_view(client, resource, window, include_body)
        return view.items, "full read of the calendar view", pages + view.pages

    def _read_view(
        self, client: GraphClient, resource: str, window: Window, include_body: bool
    ) -> Pages:
        """A plain calendarView read: only the properties needed, every page."""
        assert self.app is not None
        select = SELECT + ("body",) if include_body else SELECT
        params = {
            "startDateTime": graph_param(window.start),
            "endDateTime": graph_param(window.end),
            "$select": ",".join(select),
            "$top": str(PAGE_SIZE),
        }
        prefer = ['outlook.timezone="UTC"']
        if include_body:
            prefer.append('outlook.body-content-type="text"')
        headers = {"Prefer": ", ".join(prefer), "Accept": "application/json"}
        url = f"{self.base}/v1.0/users/{quote(resource)}/calendarView"
        try:
            return client.read(url, params, headers, resource)
        except Refused as refused:
            raise http_error(
                refused.response, resource, self.app.client_id, delegate=self.delegate
            ) from None
