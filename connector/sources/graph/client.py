"""HTTP to Microsoft Graph: pooled sessions, the concurrency limit, throttling, paging.

At most ``GRAPH_MAX_CONCURRENCY`` requests per app registration are in flight
in this process, whatever the number of rooms and calendars (Graph allows 4
for Outlook resources); ``429``/``503`` ``Retry-After`` is honoured within the
refresh's time bound; a token the resource refuses (401) is renewed once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from django.conf import settings

from accounts.tokens import acquire_token, discard_token, token_scope
from connector.core import budget, metrics
from connector.core.errors import SourceError
from connector.core.network import network_error
from connector.core.tls import trust
from connector.sources.graph.errors import error_code, retry_after

if TYPE_CHECKING:
    from accounts.models import AppRegistration
    from connector.core.trace import Trace

log = logging.getLogger(__name__)

MAX_PAGES = 500  # a guard against a nextLink loop, far above any room's week
MAX_RETRIES = 4  # throttled or unavailable answers retried per request

_sessions: dict[int, requests.Session] = {}
_slots: dict[tuple[int, int], threading.BoundedSemaphore] = {}
_pool_lock = threading.Lock()


def _session(app: AppRegistration) -> requests.Session:
    """One pooled HTTP session per app registration, reused across refreshes."""
    with _pool_lock:
        session = _sessions.get(app.pk)
        if session is None:
            # The CAs of EXCHANGE_CA_BUNDLE, never REQUESTS_CA_BUNDLE (connector/core/tls.py).
            session = trust(
                requests.Session(),
                pool_connections=4,
                pool_maxsize=max(settings.GRAPH_MAX_CONCURRENCY, 4),
            )
            session.headers["User-Agent"] = "ews-calendar"
            _sessions[app.pk] = session
        return session


def _slot(app: AppRegistration) -> threading.BoundedSemaphore:
    """The process-wide limit of concurrent Graph requests of one app registration."""
    limit = settings.GRAPH_MAX_CONCURRENCY
    with _pool_lock:
        return _slots.setdefault((app.pk, limit), threading.BoundedSemaphore(limit))


def origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port, with the scheme's default port made explicit."""
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme.lower())
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or default


class Refused(Exception):
    """Graph answered something else than 200; the caller decides what it means."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__(f"Graph answered {response.status_code}")
        self.response = response
        self.status = response.status_code
        self.code = error_code(response)[0]


@dataclass
class Pages:
    """Every page of one read: the items, and the deltaLink that ended a delta round."""

    items: list[dict[str, Any]] = field(default_factory=list)
    pages: int = 0
    delta_link: str | None = None


class GraphClient:
    """GETs to one Graph base URI with one app registration's token."""

    def __init__(
        self,
        app: AppRegistration,
        *,
        base: str,
        server_id: str,
        trace: Trace,
        deadline: float,
        note: Callable[[str], Any],
    ) -> None:
        self.app = app
        self.base = base
        # App-only: .default (Calendars.Read); delegated: Calendars.Read.Shared.
        self.scope = token_scope(app, base, "graph")
        self.server_id = server_id
        self.trace = trace
        self.deadline = deadline
        self.note = note
        self.requests = 0  # sent, retries included
        self.bytes = 0  # of the answers' bodies
        self._token: str | None = None
        self._token_renewed = False

    def token(self) -> str:
        if self._token is None:
            self._token = acquire_token(self.app, self.scope, trace=self.trace).token
        return self._token

    # -- pages ----------------------------------------------------------------------
    def read(
        self, url: str, params: dict[str, str] | None, headers: dict[str, str], resource: str
    ) -> Pages:
        """Follow ``@odata.nextLink`` to the last page; raise Refused on an answer not 200."""
        found = Pages()
        next_url: str | None = url
        while next_url is not None:
            if found.pages >= MAX_PAGES:
                raise SourceError(
                    f"Graph returned more than {MAX_PAGES} pages for {resource}.",
                    code="too-many-pages",
                    hint="Shorten the calendar's request window.",
                )
            response = self.get(next_url, params, headers)
            if response.status_code != 200:
                raise Refused(response)
            try:
                payload = response.json()
                found.items.extend(payload["value"])
            except (ValueError, KeyError, TypeError) as exc:
                raise SourceError(
                    "Graph answered something that is not a calendar view "
                    f"({exc.__class__.__name__}).",
                    code="bad-response",
                    hint="A proxy may be answering instead of Microsoft Graph: check the "
                    "server's base URI (https://graph.microsoft.com).",
                    retryable=True,
                ) from None
            found.pages += 1
            params = None  # the next link carries every parameter
            next_url = payload.get("@odata.nextLink")
            delta_link = payload.get("@odata.deltaLink")
            for link in (next_url, delta_link):
                if link is not None and origin(link) != origin(self.base):
                    # Our bearer token goes with the request: never to another host.
                    raise SourceError(
                        f"Graph's next page of {resource} points to another host.",
                        code="bad-response",
                        hint="Something between this server and Microsoft Graph rewrites its "
                        "answers: check the base URI and any proxy.",
                    )
            if next_url is None and isinstance(delta_link, str):
                found.delta_link = delta_link
        return found

    # -- one request ------------------------------------------------------------------
    def get(
        self, url: str, params: dict[str, str] | None, headers: dict[str, str]
    ) -> requests.Response:
        """One GET, retried when throttled in time, and once with a new token after a 401."""
        response = self._get(url, params, headers)
        if response.status_code == 401 and not self._token_renewed:
            # A token the resource refuses (revoked, audience changed): one new one.
            discard_token(self.app, self.token())
            self._token = None
            self._token_renewed = True
            response = self._get(url, params, headers)
        return response

    def _get(
        self, url: str, params: dict[str, str] | None, headers: dict[str, str]
    ) -> requests.Response:
        session = _session(self.app)
        slot = _slot(self.app)
        token = self.token()
        for attempt in range(MAX_RETRIES + 1):
            timeout = budget.timeout(
                min(settings.EXCHANGE_REQUEST_TIMEOUT, max(self.deadline - time.monotonic(), 1))
            )
            with slot:
                try:
                    response = session.get(
                        url,
                        params=params,
                        headers={**headers, "Authorization": f"Bearer {token}"},
                        timeout=timeout,
                    )
                except requests.RequestException as exc:
                    self._count("error")
                    error = network_error(exc, url, step="fetch", service="Microsoft Graph")
                    raise (error or SourceError(f"Graph request failed: {exc!r}")) from None
            self.requests += 1
            self.bytes += len(response.content)
            status = response.status_code
            if status not in (429, 503, 504):
                self._count("ok" if status < 400 else "error")
                return response
            self._count("throttled")
            wait = retry_after(response, attempt)
            if (
                attempt == MAX_RETRIES
                or time.monotonic() + wait > self.deadline
                or not budget.retries_allowed()  # the test console tries once
            ):
                return response
            self.note(f"Graph answered {status}; waiting {wait:g} s (Retry-After) before retrying")
            log.info("graph %s for %s: retrying after %s s", status, self.server_id, wait)
            time.sleep(wait)  # outside the slot: a waiting request holds no place
        raise AssertionError("unreachable")

    def _count(self, outcome: str) -> None:
        metrics.EXCHANGE_REQUESTS.labels(upstream=self.server_id, outcome=outcome).inc()
