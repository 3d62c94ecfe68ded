"""The checks of configuration.xml after the walk: across the file and by the models.

Duplicate ids and calendars naming a server the file lacks are found across
the document; each server, credential, calendar, filter and alarm is then
validated by its model's own validation (full_clean / clean_fields on an
unsaved instance). Each message names the file's own words (params.FIELD_NAMES)
and the line they came from.
"""

from __future__ import annotations

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError

from accounts.models import AppRegistration, ServiceAccount
from connector.models import Alarm, Calendar, Filter, Server
from connector.validators import feed_key_strength, smtp_address
from connector.xmlconfig import params as P
from connector.xmlconfig.specs import (
    CalendarSpec,
    Configuration,
    HttpAuth,
    OAuth,
    ProblemLog,
    ServerSpec,
)


class Checker(ProblemLog):
    """Checks the specs the walk produced, collecting problems instead of stopping."""

    def check(self, config: Configuration) -> None:
        servers: dict[str, ServerSpec] = {}
        for server in config.servers:
            if not server.server_id:
                continue
            if server.server_id in servers:
                self.problem(
                    server.line,
                    f"duplicate server id {server.server_id!r} "
                    f"(also line {servers[server.server_id].line})",
                )
                continue
            servers[server.server_id] = server
            self.check_server(server)
        calendars: dict[str, CalendarSpec] = {}
        for calendar in config.calendars:
            if not calendar.calendar_id:
                continue
            if calendar.calendar_id in calendars:
                self.problem(
                    calendar.line,
                    f"duplicate calendar id {calendar.calendar_id!r} "
                    f"(also line {calendars[calendar.calendar_id].line})",
                )
                continue
            calendars[calendar.calendar_id] = calendar
            server_spec = servers.get(calendar.server_id)
            if calendar.server_id and server_spec is None:
                known = ", ".join(sorted(servers)) or "none"
                self.problem(
                    calendar.line,
                    f"calendar {calendar.calendar_id!r} refers to unknown server "
                    f"{calendar.server_id!r} (servers in this file: {known})",
                )
            self.check_calendar(calendar, server_spec)

    def report(self, exc: ValidationError, lines: dict[str, int], default: int, what: str) -> None:
        for field_name, messages in exc.message_dict.items():
            line = lines.get(field_name, default)
            for message in messages:
                if field_name == NON_FIELD_ERRORS:
                    self.problem(line, f"{what}: {message}")
                else:
                    name = P.FIELD_NAMES.get(field_name, field_name)
                    self.problem(line, f"{what}: {name}: {message}")

    def check_server(self, spec: ServerSpec) -> None:
        what = f"server {spec.server_id!r}"
        auth = spec.auth
        server = Server(
            server_id=spec.server_id,
            type=spec.type,
            base_uri=spec.base_uri,
            label=spec.label,
            autodiscover=spec.autodiscover,
            # An unknown scheme is reported where it was read; not twice.
            http_scheme=auth.scheme
            if isinstance(auth, HttpAuth) and auth.scheme in Server.Scheme.values
            else Server.Scheme.NTLM,
        )
        # Server.clean() says which kind of credential each type takes, by the
        # credential's id; the file's credentials are not saved yet, so a
        # stand-in id says which kind there will be.
        server.service_account_id = -1 if isinstance(auth, HttpAuth) else None
        server.app_registration_id = -1 if isinstance(auth, OAuth) else None
        if spec.type in Server.Type.values:
            try:
                server.full_clean(
                    exclude=["service_account", "app_registration"],
                    validate_unique=False,
                    validate_constraints=False,
                )
            except ValidationError as exc:
                lines = dict(spec.lines)
                if auth is not None:
                    lines.update(service_account=auth.line, app_registration=auth.line)
                self.report(exc, lines, spec.line, what)
        if isinstance(auth, HttpAuth) and auth.username:
            account = ServiceAccount(name="check", username=auth.username)
            try:
                account.clean_fields(exclude=["name", "password"])
            except ValidationError as exc:
                self.report(exc, auth.lines, auth.line, what)
        elif isinstance(auth, OAuth):
            app = AppRegistration(
                name="check",
                flow=auth.flow,
                tenant=auth.tenant,
                client_id=auth.client_id,
                authority=auth.authority,
                account=auth.account,
            )
            # A missing tenant or client id is reported already ("needs a <tenant>").
            missing = [name for name in ("tenant", "client_id") if not getattr(app, name)]
            try:
                app.clean_fields(exclude=["name", "client_secret", *missing])
            except ValidationError as exc:
                self.report(exc, auth.lines, auth.line, what)

    def check_calendar(self, spec: CalendarSpec, server_spec: ServerSpec | None) -> None:
        what = f"calendar {spec.calendar_id!r}"
        calendar = Calendar(
            calendar_id=spec.calendar_id,
            password=spec.password or "",
            **spec.values,
        )
        lines = {
            field_name: spec.lines.get(name, spec.line)
            for field_name, name in P.FIELD_NAMES.items()
        }
        try:
            # The feed key is checked on its own: its field's length limit would say
            # the same as its rule, twice.
            calendar.full_clean(
                exclude=["server", "feed_key"], validate_unique=False, validate_constraints=False
            )
        except ValidationError as exc:
            self.report(exc, lines, spec.line, what)
        if spec.feed_key is not None:
            try:
                feed_key_strength(spec.feed_key)
            except ValidationError as exc:
                for message in exc.messages:
                    self.problem(
                        spec.lines.get("feedKey", spec.line), f"{what}: feedKey: {message}"
                    )
        seen: dict[str, int] = {}
        for address, line in zip(spec.resources, spec.resource_lines, strict=True):
            if not address:
                self.problem(line, f"{what}: resource is empty")
                continue
            if address.lower() in seen:
                self.problem(
                    line,
                    f"{what}: resource {address} listed twice (also line {seen[address.lower()]})",
                )
                continue
            seen[address.lower()] = line
            if len(address) > 500:
                self.problem(line, f"{what}: resource is longer than 500 characters")
            elif server_spec is not None and server_spec.type in (
                Server.Type.EWS,
                Server.Type.GRAPH,
            ):
                try:
                    smtp_address(address)
                except ValidationError as exc:
                    self.problem(line, f"{what}: resource: {' '.join(exc.messages)}")
        filters = Filter(**spec.filter)
        try:
            filters.clean_fields(exclude=["calendar"])
        except ValidationError as exc:
            self.report(exc, lines, spec.line, what)
        for edge, (related, offset) in spec.alarms.items():
            prefix = "start" if edge == Alarm.Edge.START else "end"
            alarm = Alarm(edge=edge, related=related, offset=offset)
            try:
                alarm.clean_fields(exclude=["calendar"])
            except ValidationError as exc:
                alarm_lines = {
                    "related": spec.lines.get(f"{prefix}Related", spec.line),
                    "offset": spec.lines.get(f"{prefix}Offset", spec.line),
                }
                for field_name, messages in exc.message_dict.items():
                    name = f"{prefix}{field_name.capitalize()}"
                    for message in messages:
                        self.problem(
                            alarm_lines.get(field_name, spec.line), f"{what}: {name}: {message}"
                        )
