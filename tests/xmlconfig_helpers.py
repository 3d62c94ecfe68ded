"""Helpers for the configuration.xml tests: the example files and database dumps."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from django.core.management import call_command

from accounts.models import AppRegistration, ServiceAccount
from connector.models import Calendar, Filter, Server

DATA = Path(__file__).resolve().parent / "data"


def read(name: str) -> bytes:
    return (DATA / name).read_bytes()


def full_dump() -> str:
    """Every row of the configuration, credentials and users, with primary keys."""
    out = io.StringIO()
    call_command("dumpdata", "accounts", "connector", "auth", indent=1, stdout=out, verbosity=0)
    return out.getvalue()


def _credential(server: Server) -> dict[str, Any] | None:
    if server.service_account_id:
        account = server.service_account
        assert account is not None
        return {
            "kind": "service account",
            "name": account.name,
            "username": account.username,
            "password": account.password,
        }
    if server.app_registration_id:
        app = server.app_registration
        assert app is not None
        return {
            "kind": "app registration",
            "name": app.name,
            "flow": app.flow,
            "tenant": app.tenant,
            "client_id": app.client_id,
            "client_secret": app.client_secret,
            "secret_expires": app.secret_expires,
            "authority": app.authority,
            "account": app.account,
        }
    return None


def configuration_dump(*, secrets: bool = True) -> dict[str, Any]:
    """The configuration, without primary keys or timestamps, to compare two databases."""
    servers = {}
    for server in Server.objects.select_related("service_account", "app_registration"):
        credential = _credential(server)
        if credential is not None and not secrets:
            credential.pop("password", None)
            credential.pop("client_secret", None)
        servers[server.server_id] = {
            "type": server.type,
            "base_uri": server.base_uri,
            "label": server.label,
            "autodiscover": server.autodiscover,
            "http_scheme": server.http_scheme,
            "credential": credential,
        }
    calendars = {}
    for calendar in Calendar.objects.select_related("server"):
        try:
            filters = calendar.filter
        except Filter.DoesNotExist:
            filters = None
        calendars[calendar.calendar_id] = {
            "server": calendar.server.server_id,
            "label": calendar.label,
            "request_window": calendar.request_window,
            "cache_persistence": calendar.cache_persistence,
            "send_cache_on_server_error": calendar.send_cache_on_server_error,
            "timezone": calendar.timezone,
            "username": calendar.username,
            "password": calendar.password if secrets else None,
            "include_body": calendar.include_body,
            "feed_key": calendar.feed_key if secrets else None,
            "resources": [
                (resource.address, resource.position) for resource in calendar.resources.all()
            ],
            "filter": None
            if filters is None
            else {
                "is_cancelled": filters.is_cancelled,
                "is_draft": filters.is_draft,
                "is_meeting": filters.is_meeting,
                "sensitivity": filters.sensitivity,
                "importance": filters.importance,
                "subject": filters.subject,
                "free_busy": filters.free_busy,
                "mask_sensitivity": filters.mask_sensitivity,
                "detail_level": filters.detail_level,
            },
            "alarms": sorted(
                (alarm.edge, alarm.related, alarm.offset) for alarm in calendar.alarms.all()
            ),
        }
    return {
        "servers": servers,
        "calendars": calendars,
        "service_accounts": sorted(
            (account.name, account.username) for account in ServiceAccount.objects.all()
        ),
        "app_registrations": sorted(
            (app.name, app.client_id) for app in AppRegistration.objects.all()
        ),
    }


# Small files built in the tests: one server (hq), calendars named by the test.
HQ = """
    <scc:server id="{id}" type="ews">
      <scc:baseuri>https://mail.contoso.example</scc:baseuri>
      <scc:authentication type="http-authentication">
        <scc:credentials>
          <scc:username>delegate@contoso.example</scc:username>
          <scc:password>{password}</scc:password>
        </scc:credentials>
      </scc:authentication>
    </scc:server>"""

CALENDAR = """
    <scc:calendar id="{id}" server="url(#{server})">
      <param name="resource">{id}@contoso.example</param>{params}
    </scc:calendar>"""


def configuration(servers: list[str], calendars: list[str]) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<fcc:configuration xmlns:fcc="urn:ews-calendar:configuration" '
        'xmlns:scc="urn:ews-calendar:configuration">\n'
        f"  <fcc:servers>{''.join(servers)}\n  </fcc:servers>\n"
        f"  <fcc:calendars>{''.join(calendars)}\n  </fcc:calendars>\n"
        "</fcc:configuration>\n"
    ).encode()


def server(server_id: str = "hq", password: str = "fake-secret-hq-1") -> str:
    return HQ.format(id=server_id, password=password)


def calendar(calendar_id: str, params: str = "", server_id: str = "hq") -> str:
    return CALENDAR.format(id=calendar_id, server=server_id, params=params)


HALL_OWN_ACCOUNT = (
    '\n      <param name="username">hall-reader@contoso.example</param>'
    '\n      <param name="password">fake-secret-hall-reader</param>'
)
BASE = configuration([server()], [calendar("lobby"), calendar("hall", HALL_OWN_ACCOUNT)])
ONLY_LOBBY = configuration([server()], [calendar("lobby")])
