"""What is broken, computed once for the status page, /healthz and /metrics.

One status vocabulary (STYLE: ``get_status()``), rendered everywhere as a word
plus a CSS class ``status status-<word>``:

- ``failing``: the last refresh failed (the last good snapshot is still served);
- ``stale``: the snapshot is much older than the calendar's period, so the
  background worker is not keeping it fresh;
- ``expiring``: it refreshes, but its client secret expires soon or expired;
- ``new``: never refreshed yet;
- ``ok``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.utils import timezone

from accounts.models import AppRegistration, ServiceAccount
from connector.models import Calendar, RefreshStatus, Server, Snapshot, WorkerHeartbeat
from connector.services.expiry import SecretExpiry, secret_expiries
from connector.services.feed_state import FeedState, feed_state

# Most urgent first: the status page sorts by this.
STATUSES = ("failing", "stale", "expiring", "new", "ok")
_RANK = {name: rank for rank, name in enumerate(STATUSES)}

# A snapshot is stale once older than twice its period plus this grace, which
# leaves room for a refresh that is queued or running (REFRESH_TIMEOUT).
STALE_GRACE = dt.timedelta(seconds=120)

# The worker writes its heartbeat every minute or so; after this long without
# one, no worker is alive (/healthz answers 503), and a cluster whose own
# heartbeat is older is no longer counted as running.
HEARTBEAT_MAX_AGE = dt.timedelta(minutes=5)

# How long the heartbeat of a cluster that stopped beating is kept, so that the
# status page can still show which one went away (connector.tasks prunes it).
HEARTBEAT_KEEP = dt.timedelta(hours=1)


def duration_text(seconds: float | None) -> str:
    """A short human duration: 45 s, 4 min, 2 h 5 min, 3 days."""
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    if seconds < 90:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 90:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} days"


def get_status(
    calendar: Calendar,
    *,
    now: dt.datetime,
    refresh: RefreshStatus | None,
    snapshot: Snapshot | None,
    secret: SecretExpiry | None = None,
) -> str:
    """The status word of one calendar (see the module's docstring)."""
    if refresh is not None and refresh.consecutive_failures > 0:
        return "failing"
    if (
        refresh is not None
        and refresh.last_error
        and refresh.last_error_at is not None
        and (refresh.last_success is None or refresh.last_error_at > refresh.last_success)
    ):
        return "failing"
    if snapshot is None:
        return "new"
    period = dt.timedelta(seconds=calendar.cache_persistence)
    if period and now - snapshot.generated > 2 * period + STALE_GRACE:
        return "stale"
    if secret is not None and secret.status in ("expiring", "expired"):
        return "expiring"
    return "ok"


@dataclass(frozen=True)
class CalendarRow:
    """One calendar as the status page shows it (plain data, no ORM object)."""

    pk: int
    calendar_id: str
    server_id: str
    server_label: str
    status: str
    last_attempt: dt.datetime | None
    last_success: dt.datetime | None
    last_duration: float | None
    outcome: str  # ok | failed | -
    snapshot_generated: dt.datetime | None
    age_seconds: float | None
    period_seconds: int
    event_count: int | None
    last_error: str
    last_error_hint: str
    last_error_code: str
    consecutive_failures: int
    next_refresh: dt.datetime | None
    ews_retiring: bool
    players: FeedState | None = None  # what players get now (connector.services.feed_state)

    @property
    def rank(self) -> int:
        return _RANK[self.status]

    @property
    def age_text(self) -> str:
        return duration_text(self.age_seconds)

    @property
    def period_text(self) -> str:
        if self.period_seconds == 0:
            return "live on every request"
        return duration_text(self.period_seconds)


def calendar_rows(now: dt.datetime | None = None) -> list[CalendarRow]:
    """Every calendar, what is broken first."""
    now = now or timezone.now()
    secrets = {item.pk: item for item in secret_expiries(timezone.localdate(now))}
    calendars = Calendar.objects.select_related("server").order_by("calendar_id")
    refreshes = {row.calendar_id: row for row in RefreshStatus.objects.all()}
    snapshots = {
        row.calendar_id: row
        for row in Snapshot.objects.defer("ics").all()  # the ICS text is not needed here
    }
    rows = []
    for calendar in calendars:
        refresh = refreshes.get(calendar.pk)
        snapshot = snapshots.get(calendar.pk)
        server = calendar.server
        secret = secrets.get(server.app_registration_id) if server.app_registration_id else None
        status = get_status(calendar, now=now, refresh=refresh, snapshot=snapshot, secret=secret)
        outcome = "-"
        if refresh is not None and refresh.last_attempt is not None:
            outcome = "failed" if status == "failing" else "ok"
        rows.append(
            CalendarRow(
                pk=calendar.pk,
                calendar_id=calendar.calendar_id,
                server_id=server.server_id,
                server_label=str(server),
                status=status,
                last_attempt=refresh.last_attempt if refresh else None,
                last_success=refresh.last_success if refresh else None,
                last_duration=refresh.last_duration if refresh else None,
                outcome=outcome,
                snapshot_generated=snapshot.generated if snapshot else None,
                age_seconds=(now - snapshot.generated).total_seconds() if snapshot else None,
                period_seconds=calendar.cache_persistence,
                event_count=snapshot.event_count if snapshot else None,
                last_error=refresh.last_error if refresh and status == "failing" else "",
                last_error_hint=refresh.last_error_hint if refresh and status == "failing" else "",
                last_error_code=refresh.last_error_code if refresh and status == "failing" else "",
                consecutive_failures=refresh.consecutive_failures if refresh else 0,
                next_refresh=refresh.next_refresh if refresh else None,
                ews_retiring=server.points_at_exchange_online_ews,
                players=feed_state(calendar, refresh=refresh, snapshot=snapshot, now=now),
            )
        )
    rows.sort(key=lambda row: (row.rank, row.calendar_id))
    return rows


@dataclass(frozen=True)
class WorkerState:
    status: str  # ok | stale | failing (no heartbeat at all)
    last_seen: dt.datetime | None
    age_seconds: float | None
    workers: list[tuple[str, dt.datetime, float, int | None]]  # name, seen, age, pid

    @property
    def running(self) -> int:
        """Clusters whose own heartbeat is recent: a restarted cluster beats under a new
        name, so the rows of those that went away must not count."""
        limit = HEARTBEAT_MAX_AGE.total_seconds()
        return sum(1 for _name, _seen, age, _pid in self.workers if age <= limit)

    @property
    def age_text(self) -> str:
        return duration_text(self.age_seconds)

    @property
    def message(self) -> str:
        if self.status == "failing":
            return (
                "No background worker has reported: snapshots are refreshed only when a "
                "player asks. Start the worker (manage.py qcluster; manage.py serve starts it "
                "beside the web server)."
            )
        if self.status == "stale":
            return (
                f"The background worker was last seen {self.age_text} ago: it is stopped or "
                "stuck, so snapshots are refreshed only when a player asks. Restart it."
            )
        return f"The background worker was last seen {self.age_text} ago."


def worker_state(now: dt.datetime | None = None) -> WorkerState:
    now = now or timezone.now()
    beats = list(WorkerHeartbeat.objects.order_by("-seen"))
    workers = [
        (beat.name, beat.seen, (now - beat.seen).total_seconds(), beat.pid) for beat in beats
    ]
    if not beats:
        return WorkerState("failing", None, None, workers)
    age = (now - beats[0].seen).total_seconds()
    status = "ok" if age <= HEARTBEAT_MAX_AGE.total_seconds() else "stale"
    return WorkerState(status, beats[0].seen, age, workers)


@dataclass(frozen=True)
class CredentialRow:
    """A credential by name: never its secret, password, username or tenant."""

    kind: str  # app registration | service account
    name: str
    status: str  # ok | expiring | expired | unknown | reauth | -
    expires: dt.date | None
    days_left: int | None
    message: str
    servers: tuple[str, ...]


def credential_rows(today: dt.date | None = None) -> list[CredentialRow]:
    today = today or timezone.localdate()
    using: dict[tuple[str, int], list[str]] = {}
    for server in Server.objects.order_by("server_id"):
        if server.app_registration_id:
            using.setdefault(("app", server.app_registration_id), []).append(server.server_id)
        if server.service_account_id:
            using.setdefault(("account", server.service_account_id), []).append(server.server_id)
    reauth = set(AppRegistration.objects.filter(reauth_needed=True).values_list("pk", flat=True))
    rows = []
    for item in secret_expiries(today):
        status, message = item.status, item.message
        if item.pk in reauth:
            status = "failing"
            message = (
                f"Re-authentication needed: the delegated sign-in of {item.name} stopped "
                'working; an administrator must click "Re-authenticate" on it and sign in again.'
            )
        elif status == "ok":
            message = f"The client secret of {item.name} expires in {item.days_left} days."
        rows.append(
            CredentialRow(
                kind="app registration",
                name=item.name,
                status=status,
                expires=item.expires,
                days_left=item.days_left,
                message=message,
                servers=tuple(using.get(("app", item.pk), [])),
            )
        )
    for account_pk, name in ServiceAccount.objects.values_list("pk", "name"):
        rows.append(
            CredentialRow(
                kind="service account",
                name=name,
                status="ok",
                expires=None,
                days_left=None,
                message="A password: it does not expire here (Active Directory may say otherwise).",
                servers=tuple(using.get(("account", account_pk), [])),
            )
        )
    order = {"failing": 0, "expired": 0, "expiring": 1, "unknown": 2, "ok": 3}
    rows.sort(key=lambda row: (order.get(row.status, 3), row.kind, row.name))
    return rows
