"""The walk of configuration.xml: servers, their authentication, calendars, into specs.

Elements are taken by local name (elements.py); an element or attribute the
file format does not have is a problem with its line, and the walk goes on.
A calendar's <param>s are read by param_values.py.
"""

from __future__ import annotations

import datetime as dt
import re

from lxml import etree

from accounts.models import MICROSOFT_AUTHORITY, AppRegistration
from connector.models import Server
from connector.models.servers import GRAPH_DEFAULT_BASE_URI
from connector.xmlconfig.elements import ElementReader, local_name, shown
from connector.xmlconfig.param_values import read_param
from connector.xmlconfig.specs import CalendarSpec, Configuration, HttpAuth, OAuth, ServerSpec


class Reader(ElementReader):
    """Turns the element tree into specs, collecting problems instead of stopping."""

    def read(self, root: etree._Element) -> Configuration:
        config = Configuration(servers=[], calendars=[])
        if local_name(root) != "configuration":
            self.problem(root, f"the root element is {shown(root)}; expected <configuration>")
            return config
        self.attributes(root, ())
        for child in self.children(root):
            name = local_name(child)
            if name == "servers":
                self.attributes(child, ())
                for item in self.children(child):
                    if local_name(item) == "server":
                        config.servers.append(self.read_server(item))
                    else:
                        self.problem(item, f"unknown element {shown(item)} in <servers>")
            elif name == "calendars":
                self.attributes(child, ())
                for item in self.children(child):
                    if local_name(item) == "calendar":
                        config.calendars.append(self.read_calendar(item))
                    else:
                        self.problem(item, f"unknown element {shown(item)} in <calendars>")
            elif name == "server":
                config.servers.append(self.read_server(child))
            elif name == "calendar":
                config.calendars.append(self.read_calendar(child))
            else:
                self.problem(child, f"unknown element {shown(child)} in <configuration>")
        return config

    def read_server(self, element: etree._Element) -> ServerSpec:
        attrs = self.attributes(element, ("id", "type"))
        server_id = attrs.get("id", "").strip()
        if not server_id:
            self.problem(element, "a <server> needs an id attribute")
        what = f"server {server_id!r}"
        server_type = attrs.get("type", Server.Type.EWS).strip().lower()
        if server_type not in Server.Type.values:
            self.problem(element, f"{what}: unknown type {server_type!r}; use ews, graph or ics")
        spec = ServerSpec(server_id=server_id, type=server_type, line=element.sourceline or 1)
        seen: dict[str, int] = {}
        for child in self.children(element):
            name = local_name(child)
            if name in seen:
                self.problem(child, f"{what}: {shown(child)} given twice (also line {seen[name]})")
                continue
            seen[name] = child.sourceline or 1
            if name in ("baseuri", "label", "autodiscover"):
                self.attributes(child, ())
                field_name = {"baseuri": "base_uri"}.get(name, name)
                setattr(spec, field_name, self.text(child))
                spec.lines[field_name] = child.sourceline or 1
            elif name == "authentication":
                spec.auth = self.read_authentication(child, what)
            else:
                self.problem(child, f"{what}: unknown element {shown(child)}")
        if spec.type == Server.Type.GRAPH and not spec.base_uri:
            spec.base_uri = GRAPH_DEFAULT_BASE_URI
        return spec

    def read_authentication(self, element: etree._Element, what: str) -> HttpAuth | OAuth | None:
        attrs = self.attributes(element, ("type",))
        auth_type = attrs.get("type", "http-authentication").strip().lower()
        if auth_type == "http-authentication":
            return self.read_http_authentication(element, what)
        if auth_type in ("oauth2-client-credentials", "oauth2-delegated"):
            return self.read_oauth(element, what, auth_type)
        self.problem(
            element,
            f"{what}: unknown authentication type {auth_type!r}; use http-authentication, "
            "oauth2-client-credentials or oauth2-delegated",
        )
        return None

    def read_http_authentication(self, element: etree._Element, what: str) -> HttpAuth:
        found: dict[str, str] = {}
        found_lines: dict[str, int] = {}

        def take(child: etree._Element, name: str, *, strip: bool = True) -> None:
            if name in found_lines:
                self.problem(
                    child, f"{what}: {shown(child)} given twice (also line {found_lines[name]})"
                )
                return
            self.attributes(child, ())
            found[name] = self.text(child, strip=strip)
            found_lines[name] = child.sourceline or 1

        for child in self.children(element):
            name = local_name(child)
            if name == "scheme":
                take(child, "scheme")
            elif name == "credentials":
                self.attributes(child, ())
                for item in self.children(child):
                    item_name = local_name(item)
                    if item_name in ("username", "password"):
                        take(item, item_name, strip=item_name != "password")
                    else:
                        self.problem(item, f"{what}: unknown element {shown(item)} in credentials")
            elif name in ("username", "password"):
                take(child, name, strip=name != "password")
            else:
                self.problem(child, f"{what}: unknown element {shown(child)} in authentication")
        scheme = found.get("scheme", "").lower() or Server.Scheme.NTLM.value
        if scheme not in Server.Scheme.values:
            self.problem(
                found_lines.get("scheme", element.sourceline or 1),
                f"{what}: unknown scheme {found['scheme']!r}; use ntlm, basic, digest "
                "or gssnegotiate",
            )
        if not found.get("username"):
            self.problem(element, f"{what}: http-authentication needs a <username>")
        return HttpAuth(
            scheme=scheme,
            username=found.get("username", ""),
            # Absent: keep the stored one. Present but empty: the account has none (an
            # export with secrets writes it so, or it would come back as another's).
            password=found.get("password"),
            line=element.sourceline or 1,
            lines={"username": found_lines.get("username", element.sourceline or 1)},
        )

    def read_oauth(self, element: etree._Element, what: str, auth_type: str) -> OAuth:
        delegated = auth_type == "oauth2-delegated"
        allowed = ("tenant", "clientid", "clientsecret", "authority") + (
            ("account",) if delegated else ()
        )
        found: dict[str, str] = {}
        found_lines: dict[str, int] = {}
        expires: dt.date | None = None
        for child in self.children(element):
            name = local_name(child)
            if name not in allowed:
                self.problem(child, f"{what}: unknown element {shown(child)} in {auth_type}")
                continue
            if name in found_lines:
                self.problem(
                    child, f"{what}: {shown(child)} given twice (also line {found_lines[name]})"
                )
                continue
            found_lines[name] = child.sourceline or 1
            attrs = self.attributes(child, ("expires",) if name == "clientsecret" else ())
            found[name] = self.text(child, strip=name != "clientsecret")
            if "expires" in attrs:
                expires = self.read_date(child, attrs["expires"], what)
        for required in ("tenant", "clientid") + (("account",) if delegated else ()):
            if not found.get(required, "").strip():
                self.problem(element, f"{what}: {auth_type} needs a <{required}>")
        return OAuth(
            flow=AppRegistration.Flow.DELEGATED
            if delegated
            else AppRegistration.Flow.CLIENT_CREDENTIALS,
            tenant=found.get("tenant", ""),
            client_id=found.get("clientid", ""),
            client_secret=found.get("clientsecret") or None,
            secret_element="clientsecret" in found,
            secret_expires=expires,
            authority=(found.get("authority") or MICROSOFT_AUTHORITY).rstrip("/"),
            account=found.get("account", ""),
            line=element.sourceline or 1,
            lines={
                {"clientid": "client_id"}.get(name, name): line
                for name, line in found_lines.items()
            },
        )

    def read_date(self, element: etree._Element, raw: str, what: str) -> dt.date | None:
        value = raw.strip()
        if not value:
            return None
        try:
            # "2027-05-01" or a full timestamp such as Entra ID shows.
            return dt.date.fromisoformat(value[:10])
        except ValueError:
            self.problem(element, f"{what}: expires={raw!r} is not a date (YYYY-MM-DD)")
            return None

    def read_calendar(self, element: etree._Element) -> CalendarSpec:
        attrs = self.attributes(element, ("id", "server"))
        calendar_id = attrs.get("id", "").strip()
        if not calendar_id:
            self.problem(element, "a <calendar> needs an id attribute")
        what = f"calendar {calendar_id!r}"
        raw_server = attrs.get("server", "")
        server_id = _server_reference(raw_server)
        if not server_id:
            self.problem(element, f'{what} needs a server attribute, e.g. server="url(#serverId)"')
        spec = CalendarSpec(
            calendar_id=calendar_id, server_id=server_id, line=element.sourceline or 1
        )
        for child in self.children(element):
            if local_name(child) != "param":
                self.problem(child, f"{what}: unknown element {shown(child)}; expected <param>")
                continue
            read_param(self, child, spec, what)
        return spec


def _server_reference(raw: str) -> str:
    """'url(#serverId)' (the PHP connector's form), '#serverId' or 'serverId'."""
    value = raw.strip()
    match = re.fullmatch(r"url\(\s*['\"]?#?([^'\")]*?)['\"]?\s*\)", value, re.IGNORECASE)
    if match:
        return match.group(1).strip()
    return value.lstrip("#").strip()
