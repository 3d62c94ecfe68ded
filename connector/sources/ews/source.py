"""EwsSource: the steps of one read of a room's calendar over EWS.

Find the endpoint (autodiscover.py), take a pooled connection and, for an app
registration, msal's token (pool.py), know the server's version (version.py),
read the calendar view and, with ``include_body``, the bodies (protocol.py),
and turn the items into EventRecords (mapping.py). Any failure leaves as a
SourceError of the step it happened in (errors.py), after the state it proves
stale is dropped: a refused token, a refused version, an endpoint that moved.
A read waits for a place among its upstream's EWS_MAX_CONCURRENCY and gives up at the
refresh's deadline; it holds the place while it talks to Exchange, not while it parses
the answer (slots.py).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from exchangelib import DELEGATE, IMPERSONATION, Account
from exchangelib.errors import ErrorCalendarViewRangeTooBig, ErrorExceededFindCountLimit
from exchangelib.ewsdatetime import UTC as EWS_UTC
from exchangelib.properties import DistinguishedFolderId, Mailbox
from exchangelib.version import EXCHANGE_2013

from accounts.tokens import AccessToken, acquire_token, discard_token
from connector.core import budget
from connector.core.errors import SourceError
from connector.core.metrics import EXCHANGE_REQUESTS
from connector.core.records import EventRecord, Window
from connector.core.trace import NullTrace, Trace
from connector.models import Calendar, Server
from connector.models.servers import EXCHANGE_ONLINE_EWS_HOSTS
from connector.sources.ews import autodiscover, mapping, pool, protocol, slots, version
from connector.sources.ews.errors import ErrorContext, source_error
from connector.sources.ews.mapping import FoundItem
from connector.sources.ews.pool import Connection, Credential

log = logging.getLogger(__name__)

MAX_VIEW_SPLITS = 6  # halvings of a calendar view too big for Exchange (1/64 of the window)


class EwsSource:
    """Reads room calendars from one EWS server with one credential."""

    def __init__(
        self, server: Server, *, calendar: Calendar | None = None, trace: Trace | None = None
    ) -> None:
        self.server = server
        self.trace = trace or NullTrace()
        self.credential = Credential.of(server, calendar)
        self.upstream_key = f"ews:{server.pk}:{self.credential.fingerprint}"

    # -- public ---------------------------------------------------------------------
    def fetch(
        self, resource: str, window: Window, *, include_body: bool = False
    ) -> list[EventRecord]:
        # A budget (the test console) shortens the deadline: connector.core.budget.
        deadline = budget.deadline(time.monotonic() + settings.REFRESH_TIMEOUT)
        slot = slots.Slot(pool.semaphore(self.upstream_key), deadline, str(self.server))
        held = slots.current.set(slot)
        try:
            try:
                slot.take()
            except SourceError as error:
                error.resource = resource
                raise
            return self._fetch_following_endpoint(resource, window, include_body, deadline)
        finally:
            slot.leave()
            slots.current.reset(held)

    # -- steps ----------------------------------------------------------------------
    def _fetch_following_endpoint(
        self, resource: str, window: Window, include_body: bool, deadline: float
    ) -> list[EventRecord]:
        endpoint = autodiscover.endpoint(
            self.server, resource, self.credential.username, self.trace
        )
        try:
            return self._fetch_renewing_token(endpoint, resource, window, include_body, deadline)
        except SourceError as error:
            if not autodiscover.discovered(self.server) or error.code not in (
                "connection",
                "dns",
                "endpoint-not-found",
            ):
                raise
            # The endpoint autodiscover gave us failed: it may have moved. Look it up again
            # (once) and retry there if it changed.
            log.info(
                "EWS endpoint %s of %s failed (%s); autodiscovering again",
                endpoint,
                self.server,
                error.code,
            )
            try:
                slots.take()
                fresh = autodiscover.discover(
                    self.server, resource, self.credential.username, self.trace, failed=endpoint
                )
            except SourceError:
                raise error from None  # the endpoint's failure is the news, not autodiscover's
            if fresh == endpoint:
                raise
            return self._fetch(fresh, resource, window, include_body, deadline)

    def _fetch_renewing_token(
        self, endpoint: str, resource: str, window: Window, include_body: bool, deadline: float
    ) -> list[EventRecord]:
        """``_fetch``; once more with a new token when Exchange refused the one it had.

        A token refused (revoked, the password changed) is forgotten; asking the
        identity platform for the next one tells at once why: a delegated sign-in
        that stopped working is "re-authentication needed" from the first failure,
        not a permission Exchange seems to lack.
        """
        try:
            return self._fetch(endpoint, resource, window, include_body, deadline)
        except SourceError as error:
            if error.code != "token-rejected" or not self.credential.oauth:
                raise
            try:
                self._token(endpoint)
            except SourceError as token_error:
                token_error.resource = token_error.resource or resource
                raise token_error from None
            log.info("Exchange refused the token of %s: one more try with a new one", self.server)
            return self._fetch(endpoint, resource, window, include_body, deadline)

    def _fetch(
        self, endpoint: str, resource: str, window: Window, include_body: bool, deadline: float
    ) -> list[EventRecord]:
        ctx = self._context(endpoint, resource)
        slots.take()  # held again for a second try: connecting may ask Exchange (the version)
        token = self._token(endpoint) if self.credential.oauth else None
        connection: Connection | None = None
        with self.trace.step("connect", f"Connect to {ctx.host}") as step:
            try:
                connection = pool.connection(self.server, self.credential, endpoint, resource, step)
                if token is not None:
                    self._use_token(connection, token)
                account = self._account(connection, resource)
                with connection.policy.deadline(deadline):
                    version.learn_version(self.server, connection, step)
            except Exception as exc:
                error = self._failure(exc, ctx, "connect")
                if error.code == "token-rejected" and connection is not None:
                    self._forget_token(connection)
                raise error from exc
        title = f"Fetch {resource or 'own calendar'}"
        with self.trace.step("fetch", title) as step:
            try:
                with connection.policy.deadline(deadline):
                    found = self._find(account, resource, window)
                    if include_body and found:
                        records = self._with_bodies(account, found)
                    else:
                        records = [record for record, _ in found]
            except Exception as exc:
                error = self._failure(exc, ctx, "fetch")
                if error.code == "token-rejected":
                    self._forget_token(connection)
                if error.code == "schema":
                    version.forget_version(self.server, connection)
                raise error from exc
            step.note(f"{len(records)} events")
            step.data["count"] = len(records)
            version.remember_version(self.server, account)
        return records

    def _failure(self, exc: BaseException, ctx: ErrorContext, step: str) -> SourceError:
        error = source_error(exc, ctx)
        if error.step == "fetch":
            error.step = step
        EXCHANGE_REQUESTS.labels(upstream=self.server.server_id, outcome=error.code).inc()
        return error

    # -- who reads ------------------------------------------------------------------
    @property
    def _delegated(self) -> bool:
        app = self.server.app_registration if self.credential.oauth else None
        return bool(app is not None and app.flow == app.Flow.DELEGATED)

    def _context(self, endpoint: str, resource: str) -> ErrorContext:
        host = urlsplit(endpoint).hostname or endpoint
        app = self.server.app_registration if self._delegated else None
        return ErrorContext(
            endpoint=endpoint,
            host=urlsplit(endpoint).netloc or endpoint,
            resource=resource,
            account=self.credential.username,
            oauth=self.credential.oauth,
            exchange_online=host.lower() in EXCHANGE_ONLINE_EWS_HOSTS,
            scheme="oauth" if self.credential.oauth else self.server.http_scheme,
            delegated=self._delegated,
            signed_in=app.account if app is not None else "",
        )

    def _token(self, endpoint: str) -> AccessToken:
        """The app's token for this Exchange; msal's cache serves it until shortly before expiry.

        App-only: the app's own (full_access_as_app); delegated: the signed-in account's
        (EWS.AccessAsUser.All), which reads the rooms as their delegate.
        """
        app = self.server.app_registration
        assert app is not None
        return acquire_token(app, pool.token_scope(app, endpoint), trace=self.trace)

    def _use_token(self, connection: Connection, token: AccessToken) -> None:
        """Every session of the connection sends msal's token of this fetch.

        Asked anew for each fetch, so that msal's renewal (5 minutes before expiry) and
        its errors (SourceErrors of the token step) come here, not inside exchangelib.
        """
        credentials = connection.credentials
        assert isinstance(credentials, protocol.MsalCredentials)
        credentials.hold(token.token, token.expires_at.timestamp())
        with connection.lock:
            connection.token = token.token

    def _forget_token(self, connection: Connection) -> None:
        """Exchange refused the token: the next fetch asks the identity platform anew."""
        app = self.server.app_registration
        if app is not None and connection.token:
            discard_token(app, connection.token)
        with connection.lock:
            connection.token = ""

    def _account(self, connection: Connection, resource: str) -> Account:
        with connection.lock:
            account = connection.accounts.get(resource)
            if account is not None:
                return account
        if resource:
            address = resource
        elif self.credential.oauth and not self._delegated:
            raise SourceError(
                "An app registration has no calendar of its own.",
                code="resource-required",
                hint="Give the calendar at least one resource (the room's SMTP address).",
                step="connect",
            )
        elif self._delegated:
            app = self.server.app_registration
            address = app.account if app is not None else ""
        else:
            address = self.credential.username
        if "@" not in address:
            raise SourceError(
                f"The account {address} has no SMTP address to read its own calendar with.",
                code="resource-required",
                hint="Write the username as user@domain (its UPN), or add the account's "
                "mailbox address as a resource.",
                step="connect",
            )
        # App-only tokens impersonate the room; a delegated token reads it as its delegate
        # (the room named in the folder id, see _find), without impersonation.
        impersonate = self.credential.oauth and not self._delegated
        account = Account(
            primary_smtp_address=address,
            config=connection.config,
            access_type=IMPERSONATION if impersonate else DELEGATE,
            default_timezone=EWS_UTC,
            locale="en_US",
        )
        account.protocol = connection.protocol  # exactly this server's configuration
        with connection.lock:
            return connection.accounts.setdefault(resource, account)

    # -- requests -------------------------------------------------------------------
    def _find(
        self, account: Account, resource: str, window: Window
    ) -> list[tuple[EventRecord, tuple[str, str]]]:
        """The events of the window, each with its (item id, change key)."""
        folder: DistinguishedFolderId
        if resource:
            folder = DistinguishedFolderId(id="calendar", mailbox=Mailbox(email_address=resource))
        else:
            folder = protocol.OwnCalendarId(id="calendar")
        items = self._view(account, folder, window.start, window.end, splits=0)
        records = []
        seen: set[str] = set()
        for item in items:
            if item.id in seen:  # an event across a split point is in both halves
                continue
            seen.add(item.id)
            record = mapping.record(item, resource or account.primary_smtp_address)
            if record is not None:
                records.append((record, (item.id, item.changekey)))
        EXCHANGE_REQUESTS.labels(upstream=self.server.server_id, outcome="ok").inc()
        return records

    def _view(
        self, account: Account, folder: Any, start: dt.datetime, end: dt.datetime, splits: int
    ) -> list[FoundItem]:
        """The items of one CalendarView; halves of it when Exchange will not give it whole.

        A CalendarView cannot be paged: a room holding more events than the server's
        EWSFindCountLimit (1000 by default) in the window is answered with the first
        ones only (IncludesLastItemInRange="false") or with ErrorExceededFindCountLimit,
        and a range Exchange finds too long with ErrorCalendarViewRangeTooBig. Each half
        of the window is then read on its own, so no event is silently lost.
        """
        splittable = splits < MAX_VIEW_SPLITS and end - start > dt.timedelta(hours=1)
        try:
            results, truncated = protocol.calendar_view(account, folder, start, end)
        except (ErrorExceededFindCountLimit, ErrorCalendarViewRangeTooBig) as exc:
            if not splittable:
                raise
            log.info("Exchange refused the view %s–%s whole (%s): halving it", start, end, exc)
            return self._halves(account, folder, start, end, splits)
        if truncated:
            if splittable:
                log.info("Exchange cut the view %s–%s short: halving it", start, end)
                return self._halves(account, folder, start, end, splits)
            log.warning(
                "Exchange returned only the first %s events of %s–%s (EWSFindCountLimit)",
                len(results),
                start,
                end,
            )
        return results

    def _halves(
        self, account: Account, folder: Any, start: dt.datetime, end: dt.datetime, splits: int
    ) -> list[FoundItem]:
        middle = start + (end - start) / 2
        return self._view(account, folder, start, middle, splits + 1) + self._view(
            account, folder, middle, end, splits + 1
        )

    def _with_bodies(
        self, account: Account, found: list[tuple[EventRecord, tuple[str, str]]]
    ) -> list[EventRecord]:
        # Exchange 2010 has no TextBody: its Body (HTML or text) is read instead.
        modern = account.version.build is None or account.version.build >= EXCHANGE_2013
        body_field = "text_body" if modern else "body"
        records = [record for record, _ in found]
        ids = [item_id for _, item_id in found]
        items = protocol.items_with_bodies(account, ids, body_field)
        enriched = [
            mapping.with_body(record, item, body_field)
            for record, item in zip(records, items, strict=True)
        ]
        EXCHANGE_REQUESTS.labels(upstream=self.server.server_id, outcome="ok").inc()
        return enriched
