"""Verify a credential: what its token grants against what its servers need, then a real read.

For an app registration, per server that uses it:

1. a token asked for now (past every cache; a pending new secret is tried
   first), and the permissions in its ``roles``/``scp`` claim, decoded without
   verifying the signature, for display only: ✓ for each permission the server
   type needs, ✗ with the fix for each missing one;
2. one room read through the server (the first room of a calendar that uses
   it), exactly as a refresh reads it (``connector.pipeline.build``). A
   permission missing from the token but granted by RBAC for Applications
   (which Exchange checks, and the token does not show) is proven by this read;
3. with an ordinary user's mailbox: that reading it is refused (least
   privilege: the app reads rooms and nothing else).

A service account (on premises) gets step 2. ``Report.ok`` is false when
something is missing or failed: ``manage.py verify_credentials`` exits 1.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from django.utils import timezone

from accounts.models import AppRegistration, ServiceAccount
from connector.core.errors import SourceError
from connector.core.records import Window
from connector.core.trace import NullTrace
from connector.models import Calendar, Server
from connector.pipeline.build import Source, fetch_resource, source_for
from connector.pipeline.grants import grants_of

log = logging.getLogger(__name__)

OK, MISSING, WARNING = "ok", "missing", "warning"
DENIED_CODES = {"ErrorAccessDenied", "ErrorImpersonateUserDenied", "http-403"}
TOKEN_NOTE = (
    "The permissions are read from the access token's claims, decoded without verifying "
    "its signature: for display only. Exchange and Graph check the token themselves."
)


@dataclass(frozen=True)
class Line:
    status: str  # ok, missing, warning
    text: str
    fix: str = ""

    @property
    def mark(self) -> str:
        return {OK: "✓", MISSING: "✗"}.get(self.status, "!")


@dataclass
class ServerCheck:
    server: str  # its label and id
    lines: list[Line] = field(default_factory=list)
    granted: list[str] = field(default_factory=list)  # what the token names


@dataclass
class Report:
    credential: str
    kind: str  # "app registration" or "service account"
    servers: list[ServerCheck] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)  # about the credential as a whole
    note: str = ""

    @property
    def all_lines(self) -> list[Line]:
        return [*self.lines, *(line for check in self.servers for line in check.lines)]

    @property
    def ok(self) -> bool:
        return not any(line.status == MISSING for line in self.all_lines)


def verify_app_registration(app: AppRegistration, *, ordinary_mailbox: str = "") -> Report:
    report = Report(app.name, "app registration", note=TOKEN_NOTE)
    servers = list(Server.objects.filter(app_registration=app).order_by("server_id"))
    if not servers:
        report.lines.append(
            Line(WARNING, "No server uses this app registration yet: nothing to verify against.")
        )
    for server in servers:
        server.app_registration = app  # one object: a promoted secret is seen by all
        report.servers.append(_check_app_server(server, ordinary_mailbox))
    if app.pending_secret:
        report.lines.append(
            Line(
                MISSING,
                "The new client secret has not produced a token yet; the current secret "
                "stays in use.",
                app.pending_secret_error,
            )
        )
    return report


def verify_service_account(account: ServiceAccount, *, ordinary_mailbox: str = "") -> Report:
    report = Report(account.name, "service account")
    servers = list(Server.objects.filter(service_account=account).order_by("server_id"))
    if not servers:
        report.lines.append(
            Line(WARNING, "No server uses this service account yet: nothing to verify against.")
        )
    for server in servers:
        check = ServerCheck(_server_name(server))
        check.lines.extend(_read_checks(server, ordinary_mailbox)[0])
        report.servers.append(check)
    return report


def verify_credentials(
    names: list[str], *, ordinary_mailbox: str = ""
) -> tuple[list[Report], list[str]]:
    """Reports of the named credentials (all when none is named), and the unknown names."""
    apps = AppRegistration.objects.all()
    accounts = ServiceAccount.objects.all()
    if names:
        apps = apps.filter(name__in=names)
        accounts = accounts.filter(name__in=names)
    found = {app.name for app in apps} | {account.name for account in accounts}
    reports = [verify_app_registration(app, ordinary_mailbox=ordinary_mailbox) for app in apps]
    reports += [
        verify_service_account(account, ordinary_mailbox=ordinary_mailbox) for account in accounts
    ]
    return reports, [name for name in names if name not in found]


def _server_name(server: Server) -> str:
    return f"{server.label or server.server_id} ({server.server_id}, {server.type})"


def _check_app_server(server: Server, ordinary_mailbox: str) -> ServerCheck:
    check = ServerCheck(_server_name(server))
    try:
        grants = grants_of(server)
    except SourceError as error:
        check.lines.append(Line(MISSING, f"No token: {error.message}", error.hint))
        return check
    check.granted = grants.granted
    check.lines.append(
        Line(
            OK,
            f"Token obtained for {grants.scope}; it grants: "
            + (", ".join(grants.granted) or "no permission")
            if grants.readable
            else f"Token obtained for {grants.scope}, but it is not a readable JWT: "
            "the permissions are checked by reading a room.",
        )
    )
    reads, room_read = _read_checks(server, ordinary_mailbox)
    for needed in grants.needed:
        if needed.in_token:
            check.lines.append(Line(OK, f"{needed.name} ({needed.words}) is in the token."))
        elif room_read:
            check.lines.append(
                Line(
                    OK,
                    f"{needed.name} is not in the token, but the room was read: it is granted "
                    "by Exchange (RBAC for Applications), which the token does not show.",
                )
            )
        else:
            check.lines.append(
                Line(MISSING, f"{needed.name} ({needed.words}) is missing.", needed.fix)
            )
    check.lines.extend(reads)
    return check


def _room_of(server: Server) -> tuple[Calendar, str] | None:
    """A calendar that reads with the server's own credentials, and its first room."""
    calendars = (
        Calendar.objects.filter(server=server, username="")
        .prefetch_related("resources")
        .order_by("calendar_id")
    )
    for calendar in calendars:
        for resource in calendar.resources.all():
            if resource.address:
                return calendar, resource.address
    return None


def _window() -> Window:
    start = timezone.now().replace(minute=0, second=0, microsecond=0)
    return Window(start, start + dt.timedelta(days=1))


def _read_checks(server: Server, ordinary_mailbox: str) -> tuple[list[Line], bool]:
    """The lines of the room read (and the least-privilege check); whether a room was read."""
    found = _room_of(server)
    if found is None:
        return [
            Line(
                WARNING,
                "No calendar with a room uses this server yet: no room was read.",
                "Add a calendar with a room on this server, then verify again.",
            )
        ], False
    calendar, room = found
    lines: list[Line] = []
    trace = NullTrace()
    try:
        source = source_for(calendar, server=server, trace=trace)
        records = fetch_resource(source, room, _window(), include_body=False, trace=trace)
    except SourceError as error:
        return [Line(MISSING, f"Reading {room} failed: {error.message}", error.hint)], False
    lines.append(Line(OK, f"Read {room}: {len(records)} events in the next 24 hours."))
    if ordinary_mailbox:
        lines.append(_denied_check(source, ordinary_mailbox))
    return lines, True


def _denied_check(source: Source, mailbox: str) -> Line:
    trace = NullTrace()
    try:
        fetch_resource(source, mailbox, _window(), include_body=False, trace=trace)
    except SourceError as error:
        if error.code in DENIED_CODES:
            return Line(OK, f"Reading the ordinary mailbox {mailbox} is refused (least privilege).")
        return Line(
            WARNING,
            f"Could not check the ordinary mailbox {mailbox}: {error.message}",
            error.hint,
        )
    return Line(
        MISSING,
        f"The credential can read the ordinary mailbox {mailbox}: it is not limited to rooms.",
        "Scope it to the room mailboxes with RBAC for Applications (the PowerShell on the app "
        "registration's page) and remove the tenant-wide grant in Entra ID; for a service "
        "account, remove its rights on that mailbox.",
    )
