"""Writing configuration.xml from the database, in the PHP connector's format.

Secrets (passwords, client secrets, feed keys) are left out unless asked; an
import over the same database then keeps the stored ones. Values equal to the
file's defaults are not written, so an export reads like a hand-written file.
"""

from __future__ import annotations

from collections.abc import Iterable
from xml.sax.saxutils import escape, quoteattr

from accounts.models import MICROSOFT_AUTHORITY, AppRegistration
from connector.models import Alarm, Calendar, Filter, Server
from connector.xmlconfig import params as P

NAMESPACE = "urn:ews-calendar:configuration"


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = ['<?xml version="1.0" encoding="UTF-8"?>']
        self.depth = 0

    def write(self, text: str) -> None:
        self.lines.append("  " * self.depth + text)

    def open(self, tag: str, **attributes: str) -> None:
        self.write(f"<{tag}{_attributes(attributes)}>")
        self.depth += 1

    def close(self, tag: str) -> None:
        self.depth -= 1
        self.write(f"</{tag}>")

    def element(self, tag: str, text: str, **attributes: str) -> None:
        if text:
            self.write(f"<{tag}{_attributes(attributes)}>{_text(text)}</{tag}>")
        else:
            self.write(f"<{tag}{_attributes(attributes)}/>")

    def param(self, name: str, value: object) -> None:
        if isinstance(value, bool):
            value = "true" if value else "false"
        self.write(f'<param name="{name}">{_text(str(value))}</param>')

    def comment(self, text: str) -> None:
        self.write(f"<!-- {text.replace('--', '- -')} -->")


def _attributes(attributes: dict[str, str]) -> str:
    return "".join(f" {name}={quoteattr(value)}" for name, value in attributes.items())


def _text(value: str) -> str:
    # A parser reads a raw carriage return as a line feed (XML end-of-line handling):
    # written as a character reference, a password with one comes back as it was.
    return escape(value, {"\r": "&#13;"})


def export_configuration(
    calendars: Iterable[Calendar] | None = None, *, include_secrets: bool = False
) -> str:
    """The configuration as configuration.xml text.

    ``calendars``: only these and their servers (default: everything).
    """
    calendar_qs = Calendar.objects.select_related("server", "filter").prefetch_related(
        "resources", "alarms"
    )
    server_qs = Server.objects.select_related("service_account", "app_registration")
    partial = calendars is not None
    if calendars is not None:
        wanted = [calendar.pk for calendar in calendars]
        calendar_qs = calendar_qs.filter(pk__in=wanted)
        server_qs = server_qs.filter(calendars__pk__in=wanted).distinct()

    out = _Writer()
    if partial:
        out.comment(
            "Part of a configuration (selected calendars and their servers). Imported as a "
            "whole configuration it would remove everything else: check the preview."
        )
    if not include_secrets:
        out.comment(
            "Passwords, client secrets and feed keys are left out. Imported over the same "
            "database, the stored ones are kept; elsewhere, enter them in the admin."
        )
    out.write(f'<fcc:configuration xmlns:fcc="{NAMESPACE}" xmlns:scc="{NAMESPACE}">')
    out.depth += 1
    out.open("fcc:servers")
    for server in server_qs.order_by("server_id"):
        _write_server(out, server, include_secrets)
    out.close("fcc:servers")
    out.open("fcc:calendars")
    for calendar in calendar_qs.order_by("calendar_id"):
        _write_calendar(out, calendar, include_secrets)
    out.close("fcc:calendars")
    out.close("fcc:configuration")
    return "\n".join(out.lines) + "\n"


def _write_server(out: _Writer, server: Server, include_secrets: bool) -> None:
    out.open("scc:server", id=server.server_id, type=server.type)
    if server.base_uri:
        out.element("scc:baseuri", server.base_uri)
    if server.autodiscover:
        out.element("scc:autodiscover", server.autodiscover)
    if server.label:
        out.element("scc:label", server.label)
    account = server.service_account if server.service_account_id else None
    app = server.app_registration if server.app_registration_id else None
    if account is not None:
        out.open("scc:authentication", type="http-authentication")
        out.element("scc:scheme", server.http_scheme)
        out.open("scc:credentials")
        out.element("scc:username", account.username)
        if include_secrets:
            # Even empty (<scc:password/>): left out, it would mean "keep the stored one",
            # and the import could give this server another account of the same username.
            out.element("scc:password", account.password)
        out.close("scc:credentials")
        out.close("scc:authentication")
    elif app is not None:
        delegated = app.flow == AppRegistration.Flow.DELEGATED
        auth_type = "oauth2-delegated" if delegated else "oauth2-client-credentials"
        out.open("scc:authentication", type=auth_type)
        out.element("scc:tenant", app.tenant)
        out.element("scc:clientid", app.client_id)
        expires = {"expires": app.secret_expires.isoformat()} if app.secret_expires else {}
        secret = app.client_secret if include_secrets else ""
        if secret or expires:
            out.element("scc:clientsecret", secret, **expires)
        if app.authority.rstrip("/") != MICROSOFT_AUTHORITY:
            out.element("scc:authority", app.authority)
        if delegated:
            out.element("scc:account", app.account)
        out.close("scc:authentication")
    out.close("scc:server")


def _write_calendar(out: _Writer, calendar: Calendar, include_secrets: bool) -> None:
    out.open("scc:calendar", id=calendar.calendar_id, server=f"url(#{calendar.server.server_id})")
    try:
        filters = calendar.filter
    except Filter.DoesNotExist:
        filters = Filter()  # what the pipeline applies without a filter row
    alarms = {alarm.edge: alarm for alarm in calendar.alarms.all()}
    for param in P.PARAMS:
        if param.section == "resource":
            for resource in calendar.resources.all():
                out.param(param.name, resource.address)
            continue
        if param.section == "alarm":
            edge, _, part = param.field.partition(".")
            alarm: Alarm | None = alarms.get(edge)
            if alarm is not None:
                out.param(param.name, alarm.related if part == "related" else alarm.offset)
            continue
        if param.kind == "secret" and not include_secrets:
            continue
        if param.section == "filter":
            value = getattr(filters, param.field)
            default = P.FILTER_DEFAULTS[param.field]
        else:
            value = getattr(calendar, param.field)
            default = P.CALENDAR_DEFAULTS.get(param.field, "")
        if value != default:
            out.param(param.name, value)
    out.close("scc:calendar")
