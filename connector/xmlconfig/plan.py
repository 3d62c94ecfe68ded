"""What importing a configuration would add, change and remove; and applying it.

The file describes the whole configuration: servers and calendars it does not
name are removed, unless the plan is a merge (``make_plan(..., merge=True)``),
which adds and changes but removes nothing. Credentials are not named in the file; they are found by
content (the same username, the same app registration) and reused, or created
and named after the server (``credentials.CredentialMatcher`` decides). A
password left out of the file (an export without secrets) keeps the stored one.

``Plan.fingerprint()`` identifies what a plan would do: the admin's confirm
step imports only when the plan computed then is the one that was previewed
(``import_configuration(..., expected_fingerprint=...)``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

from django.db import transaction

from accounts.models import AppRegistration, ServiceAccount
from connector.models import Alarm, Calendar, ConfigRevision, Filter, Resource, Server
from connector.models.servers import EXCHANGE_ONLINE_EWS_WARNING
from connector.xmlconfig import params as P
from connector.xmlconfig.credentials import CredentialChoice, CredentialMatcher, match_order
from connector.xmlconfig.reader import CalendarSpec, Configuration, HttpAuth, ServerSpec

Action = Literal["add", "change", "remove"]
_SIGNS = {"add": "+", "change": "~", "remove": "-"}


@dataclass
class Change:
    action: Action
    kind: str  # "server", "calendar", "service account", "app registration"
    name: str
    details: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"{_SIGNS[self.action]} {self.kind} {self.name}"
        return f"{text}: {', '.join(self.details)}" if self.details else text


@dataclass
class Plan:
    configuration: Configuration
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    credentials: dict[str, CredentialChoice | None] = field(default_factory=dict)
    servers_to_write: set[str] = field(default_factory=set)
    calendars_to_write: set[str] = field(default_factory=set)
    servers_to_remove: list[Server] = field(default_factory=list)
    calendars_to_remove: list[Calendar] = field(default_factory=list)
    merge: bool = False  # nothing is removed: what the file does not name stays
    revision: ConfigRevision | None = None  # what it replaced, kept once the plan is applied

    def of(self, action: Action) -> list[Change]:
        return [change for change in self.changes if change.action == action]

    @property
    def added(self) -> list[Change]:
        return self.of("add")

    @property
    def changed(self) -> list[Change]:
        return self.of("change")

    @property
    def removed(self) -> list[Change]:
        return self.of("remove")

    @property
    def is_empty(self) -> bool:
        return not self.changes

    def summary(self) -> str:
        return (
            f"{len(self.added)} to add, {len(self.changed)} to change, "
            f"{len(self.removed)} to remove"
        )

    def lines(self) -> list[str]:
        return [str(change) for change in self.changes]

    def fingerprint(self) -> str:
        """Identifies what this plan would do, to tell whether a preview is still true."""
        mode = ["merge"] if self.merge else []
        return hashlib.sha256("\n".join(mode + self.lines()).encode()).hexdigest()


class PlanChanged(Exception):
    """The plan computed now is not the one previewed: nothing was written.

    ``plan`` is what importing would do now, to be shown again.
    """

    def __init__(self, plan: Plan) -> None:
        super().__init__("The configuration changed since the preview; check it again.")
        self.plan = plan


# --- current and wanted states, in comparable form --------------------------------


def _calendar_state(calendar: Calendar) -> dict[str, Any]:
    state: dict[str, Any] = {name: getattr(calendar, name) for name in P.CALENDAR_FIELDS}
    state["server"] = calendar.server.server_id
    state["resources"] = [resource.address for resource in calendar.resources.all()]
    try:
        filters = calendar.filter
    except Filter.DoesNotExist:
        # What the pipeline applies to a calendar without a filter row.
        filters = Filter()
    state["filter"] = {name: getattr(filters, name) for name in P.FILTER_FIELDS}
    state["alarms"] = {alarm.edge: (alarm.related, alarm.offset) for alarm in calendar.alarms.all()}
    return state


def _wanted_calendar_state(spec: CalendarSpec, current: Calendar | None) -> dict[str, Any]:
    state: dict[str, Any] = dict(spec.values)
    if spec.password is not None:
        state["password"] = spec.password
    elif current is not None and current.username == state["username"]:
        # An export without secrets left the password out: keep the stored one.
        state["password"] = current.password
    else:
        state["password"] = ""
    if spec.feed_key is not None:
        state["feed_key"] = spec.feed_key
    elif current is not None:
        state["feed_key"] = current.feed_key
    else:
        state["feed_key"] = None  # a new random key
    state["server"] = spec.server_id
    state["resources"] = list(spec.resources)
    state["filter"] = dict(spec.filter)
    state["alarms"] = dict(spec.alarms)
    return state


def _calendar_differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    details = []
    if before["server"] != after["server"]:
        details.append("server")
    if before["resources"] != after["resources"]:
        details.append("resource")
    for name in P.CALENDAR_FIELDS:
        if before[name] != after[name]:
            details.append(P.FIELD_NAMES[name])
    for name in P.FILTER_FIELDS:
        if before["filter"][name] != after["filter"][name]:
            details.append(P.FIELD_NAMES[name])
    for edge in (Alarm.Edge.START, Alarm.Edge.END):
        if before["alarms"].get(edge) != after["alarms"].get(edge):
            details.append(f"{edge}Related/{edge}Offset")
    return details


def _server_differences(
    server: Server, spec: ServerSpec, credential: CredentialChoice | None
) -> list[str]:
    details = []
    for name, label in (
        ("type", "type"),
        ("base_uri", "baseuri"),
        ("label", "label"),
        ("autodiscover", "autodiscover"),
    ):
        if getattr(server, name) != getattr(spec, name):
            details.append(label)
    if isinstance(spec.auth, HttpAuth) and server.http_scheme != spec.auth.scheme:
        details.append("scheme")
    current: tuple[str, Any] | None = None
    if server.service_account_id:
        current = (ServiceAccount.__name__, server.service_account_id)
    elif server.app_registration_id:
        current = (AppRegistration.__name__, server.app_registration_id)
    wanted = credential.identity if credential is not None else None
    if current != wanted:
        details.append("authentication")
    return details


# --- planning ---------------------------------------------------------------------


def make_plan(
    config: Configuration,
    *,
    merge: bool = False,
    credential_refs: dict[str, tuple[str, int]] | None = None,
) -> Plan:
    """Compare the file with the database; nothing is written.

    ``merge``: servers and calendars the file does not name stay as they are
    (nothing is removed). ``credential_refs`` (a revision's, by server id): the
    credential each server used then, preferred when it still matches.
    """
    plan = Plan(configuration=config, merge=merge)
    servers = {
        server.server_id: server
        for server in Server.objects.select_related("service_account", "app_registration")
    }
    calendars = {
        calendar.calendar_id: calendar
        for calendar in Calendar.objects.select_related("server", "filter").prefetch_related(
            "resources", "alarms"
        )
    }
    credentials = CredentialMatcher(plan.warnings, credential_refs or {})
    choices = {
        spec.server_id: credentials.for_server(spec, servers.get(spec.server_id))
        for spec in match_order(config.servers)
    }

    server_changes: list[Change] = []
    for spec in config.servers:
        current = servers.get(spec.server_id)
        choice = choices[spec.server_id]
        plan.credentials[spec.server_id] = choice
        if current is None:
            plan.servers_to_write.add(spec.server_id)
            server_changes.append(
                Change(
                    "add", "server", spec.server_id, [spec.type, spec.base_uri or spec.autodiscover]
                )
            )
        else:
            details = _server_differences(current, spec, choice)
            if details:
                plan.servers_to_write.add(spec.server_id)
                server_changes.append(Change("change", "server", spec.server_id, details))
        if (
            spec.type == Server.Type.EWS
            and Server(type=spec.type, base_uri=spec.base_uri).points_at_exchange_online_ews
        ):
            plan.warnings.append(f"server {spec.server_id}: {EXCHANGE_ONLINE_EWS_WARNING}")

    credential_changes: list[Change] = []
    for choice in [*credentials.new, *credentials.touched.values()]:
        kind = "service account" if choice.model is ServiceAccount else "app registration"
        if choice.existing is None:
            summary = choice.values.get("username") or choice.values.get("client_id", "")
            credential_changes.append(Change("add", kind, choice.name, [summary]))
        elif choice.changed:
            credential_changes.append(Change("change", kind, choice.name, choice.changed))

    calendar_changes: list[Change] = []
    named = set()
    for calendar_spec in config.calendars:
        named.add(calendar_spec.calendar_id)
        current_calendar = calendars.get(calendar_spec.calendar_id)
        wanted = _wanted_calendar_state(calendar_spec, current_calendar)
        if wanted["username"] and calendar_spec.password is None and not wanted["password"]:
            plan.warnings.append(
                f"calendar {calendar_spec.calendar_id}: the file gives no password for "
                f"{wanted['username']}; enter it in the admin (Calendars) before it can refresh"
            )
        if current_calendar is None:
            plan.calendars_to_write.add(calendar_spec.calendar_id)
            rooms = len(calendar_spec.resources)
            calendar_changes.append(
                Change(
                    "add",
                    "calendar",
                    calendar_spec.calendar_id,
                    [f"server {calendar_spec.server_id}", f"{rooms} room(s)"],
                )
            )
            continue
        details = _calendar_differences(_calendar_state(current_calendar), wanted)
        if details:
            plan.calendars_to_write.add(calendar_spec.calendar_id)
            calendar_changes.append(
                Change("change", "calendar", calendar_spec.calendar_id, details)
            )
    for calendar_id, calendar in sorted(calendars.items()):
        if calendar_id not in named and not merge:
            plan.calendars_to_remove.append(calendar)
            calendar_changes.append(Change("remove", "calendar", calendar_id))

    named_servers = {spec.server_id for spec in config.servers}
    for server_id, server in sorted(servers.items()):
        if server_id not in named_servers and not merge:
            plan.servers_to_remove.append(server)
            server_changes.append(Change("remove", "server", server_id))

    plan.changes = credential_changes + server_changes + calendar_changes
    return plan


# --- applying ----------------------------------------------------------------------


def _save_credential(choice: CredentialChoice) -> ServiceAccount | AppRegistration:
    if choice.saved is not None:
        return choice.saved
    if choice.existing is None:
        obj = choice.model(name=choice.name, **choice.values)
        obj.save()
    else:
        obj = choice.existing
        for name, value in choice.values.items():
            setattr(obj, name, value)
        if choice.values:
            obj.save()
    choice.saved = obj
    return obj


def apply_plan(plan: Plan) -> None:
    """Write the plan, all or nothing."""
    config = plan.configuration
    with transaction.atomic():
        for choice in plan.credentials.values():
            if choice is not None:
                _save_credential(choice)
        for calendar in plan.calendars_to_remove:
            calendar.delete()

        servers = {server.server_id: server for server in Server.objects.all()}
        for spec in config.servers:
            if spec.server_id in plan.servers_to_write:
                servers[spec.server_id] = _write_server(
                    spec, servers.get(spec.server_id), plan.credentials[spec.server_id]
                )

        calendars = {calendar.calendar_id: calendar for calendar in Calendar.objects.all()}
        for calendar_spec in config.calendars:
            if calendar_spec.calendar_id in plan.calendars_to_write:
                _write_calendar(
                    calendar_spec,
                    calendars.get(calendar_spec.calendar_id),
                    servers[calendar_spec.server_id],
                )

        for server in plan.servers_to_remove:
            server.delete()


def _write_server(
    spec: ServerSpec, server: Server | None, choice: CredentialChoice | None
) -> Server:
    if server is None:
        server = Server(server_id=spec.server_id)
    elif (server.type, server.base_uri, server.autodiscover) != (
        spec.type,
        spec.base_uri,
        spec.autodiscover,
    ):
        # Another endpoint: what was learned about the old one no longer holds.
        server.ews_version = ""
        server.ews_endpoint = ""
        server.ews_endpoint_discovered = None
    server.type = spec.type
    server.base_uri = spec.base_uri
    server.label = spec.label
    server.autodiscover = spec.autodiscover
    if isinstance(spec.auth, HttpAuth):
        server.http_scheme = spec.auth.scheme
    credential = choice.saved if choice is not None else None
    server.service_account = credential if isinstance(credential, ServiceAccount) else None
    server.app_registration = credential if isinstance(credential, AppRegistration) else None
    server.save()
    return server


def _write_calendar(spec: CalendarSpec, calendar: Calendar | None, server: Server) -> None:
    before = _calendar_state(calendar) if calendar is not None else None
    wanted = _wanted_calendar_state(spec, calendar)
    if calendar is None:
        calendar = Calendar(calendar_id=spec.calendar_id)
    calendar.server = server
    for name in P.CALENDAR_FIELDS:
        if name == "feed_key" and wanted[name] is None:
            continue  # a new calendar keeps the random key it was born with
        setattr(calendar, name, wanted[name])
    calendar.save()

    if before is None or before["resources"] != wanted["resources"]:
        calendar.resources.all().delete()
        Resource.objects.bulk_create(
            Resource(calendar=calendar, address=address, position=position)
            for position, address in enumerate(wanted["resources"])
        )
    Filter.objects.update_or_create(calendar=calendar, defaults=wanted["filter"])
    for edge in (Alarm.Edge.START, Alarm.Edge.END):
        if edge in wanted["alarms"]:
            related, offset = wanted["alarms"][edge]
            Alarm.objects.update_or_create(
                calendar=calendar, edge=edge, defaults={"related": related, "offset": offset}
            )
        else:
            Alarm.objects.filter(calendar=calendar, edge=edge).delete()
