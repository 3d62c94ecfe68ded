"""Reading configuration.xml into plain specs, with every problem as "line N: message".

Real files use the prefixes ``fcc:`` and ``scc:`` inconsistently, with
namespace URIs that vary, or none at all: elements are matched by their local
name, case-insensitively, and so are parameter names. The parser refuses DTDs,
entities and external references, and files over ``CONFIG_MAX_BYTES``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from lxml import etree

from accounts.models import MICROSOFT_AUTHORITY, AppRegistration, ServiceAccount
from connector.models import Alarm, Calendar, Filter, Server
from connector.models.servers import GRAPH_DEFAULT_BASE_URI
from connector.validators import CommaListOf, normalize_list, smtp_address
from connector.xmlconfig import params as P


@dataclass(frozen=True, order=True)
class Problem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class ConfigError(Exception):
    """An invalid file; ``problems`` lists every problem found, in file order."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(set(problems))
        super().__init__("\n".join(str(problem) for problem in self.problems))


@dataclass
class HttpAuth:
    """<authentication type="http-authentication">: a service account."""

    scheme: str
    username: str
    password: str | None  # None: not in the file (kept when the account exists)
    line: int
    lines: dict[str, int] = field(default_factory=dict)  # model field → line


@dataclass
class OAuth:
    """<authentication type="oauth2-client-credentials"> or "oauth2-delegated"."""

    flow: str  # AppRegistration.Flow value
    tenant: str
    client_id: str
    client_secret: str | None  # None: not in the file (kept when the registration exists)
    secret_element: bool  # <clientsecret> present: its expires= is what the file says
    secret_expires: dt.date | None
    authority: str
    account: str
    line: int
    lines: dict[str, int] = field(default_factory=dict)  # model field → line

    @property
    def type_name(self) -> str:
        if self.flow == AppRegistration.Flow.DELEGATED:
            return "oauth2-delegated"
        return "oauth2-client-credentials"


@dataclass
class ServerSpec:
    server_id: str
    type: str
    base_uri: str = ""
    label: str = ""
    autodiscover: str = ""
    auth: HttpAuth | OAuth | None = None
    line: int = 0
    lines: dict[str, int] = field(default_factory=dict)  # model field → line


@dataclass
class CalendarSpec:
    calendar_id: str
    server_id: str
    line: int
    values: dict[str, Any] = field(default_factory=lambda: dict(P.CALENDAR_DEFAULTS))
    password: str | None = None  # None: not in the file
    feed_key: str | None = None  # None: not in the file
    resources: list[str] = field(default_factory=list)
    filter: dict[str, Any] = field(default_factory=lambda: dict(P.FILTER_DEFAULTS))
    alarms: dict[str, tuple[str, int]] = field(default_factory=dict)  # edge → (related, offset)
    lines: dict[str, int] = field(default_factory=dict)  # param name → line
    resource_lines: list[int] = field(default_factory=list)


@dataclass
class Configuration:
    servers: list[ServerSpec]
    calendars: list[CalendarSpec]


# --- XML -------------------------------------------------------------------------

# A comment may mention anything; a declaration outside one is refused outright.
_DECLARATION = re.compile(rb"<!--.*?-->|<!\[CDATA\[.*?\]\]>|<!(DOCTYPE|ENTITY)", re.DOTALL)


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _refuse_declarations(data: bytes) -> list[Problem]:
    return [
        Problem(
            _line_of(data, match.start()),
            f"<!{match.group(1).decode()}> is refused: configuration.xml may not "
            "declare a DTD or entities",
        )
        for match in _DECLARATION.finditer(data)
        if match.group(1)
    ]


def _check_utf8(data: bytes) -> list[Problem]:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [Problem(_line_of(data, exc.start), "the file is not UTF-8 (save it as UTF-8)")]
    return []


def _parser(recover: bool = False) -> etree.XMLParser:
    # A new parser each time: lxml parsers keep an error log across documents.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        recover=recover,
    )


def parse_xml(data: bytes) -> etree._Element:
    """The root element, or ConfigError; never expands an entity or fetches anything."""
    limit = settings.CONFIG_MAX_BYTES
    if len(data) > limit:
        raise ConfigError(
            [
                Problem(
                    1,
                    f"the file is {len(data):,} bytes, over the limit of {limit:,} bytes "
                    "(CONFIG_MAX_BYTES); a configuration is a few kilobytes",
                )
            ]
        )
    if not data.strip():
        raise ConfigError([Problem(1, "the file is empty")])
    problems = _refuse_declarations(data) + _check_utf8(data)
    if problems:
        raise ConfigError(problems)
    parser = _parser()
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        # The parser's own log: the exception's may also hold errors of
        # documents parsed before in this thread.
        errors = [entry for entry in parser.error_log if entry.level_name in ("ERROR", "FATAL")]
        if errors and all(entry.type_name == "NS_ERR_UNDEFINED_NAMESPACE" for entry in errors):
            # Prefixes used without a namespace declaration: matching by local
            # name makes them harmless, so read the file anyway.
            root = etree.fromstring(data, _parser(recover=True))
        else:
            raise ConfigError(
                [Problem(entry.line or 1, f"malformed XML: {entry.message}") for entry in errors]
                or [Problem(exc.lineno or 1, f"malformed XML: {exc.msg}")]
            ) from None
    if root is None:
        raise ConfigError([Problem(1, "malformed XML: no root element")])
    if root.getroottree().docinfo.doctype:
        raise ConfigError([Problem(1, "a DOCTYPE is refused in configuration.xml")])
    return root


def local_name(element: etree._Element) -> str:
    """'fcc:server', '{urn:x}server' and 'server' are all 'server'."""
    tag = element.tag
    if not isinstance(tag, str):
        return ""
    return tag.rpartition("}")[2].rpartition(":")[2].lower()


def shown(element: etree._Element) -> str:
    """The element as the file writes it, for messages."""
    tag = str(element.tag)
    if tag.startswith("{"):
        name = tag.rpartition("}")[2]
        return f"<{element.prefix}:{name}>" if element.prefix else f"<{name}>"
    return f"<{tag}>"


# --- reading --------------------------------------------------------------------


class Reader:
    """Turns the element tree into specs, collecting problems instead of stopping."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def problem(self, where: etree._Element | int, message: str) -> None:
        line = where if isinstance(where, int) else (where.sourceline or 1)
        self.problems.append(Problem(line, message))

    # Generic helpers

    def children(self, element: etree._Element) -> list[etree._Element]:
        result = []
        for child in element:
            if isinstance(child.tag, str):
                result.append(child)
            elif child.tag is etree.Entity:  # type: ignore[comparison-overlap]
                self.problem(child, f"entity reference {child.text} is refused")
        return result

    def attributes(self, element: etree._Element, allowed: tuple[str, ...]) -> dict[str, str]:
        found: dict[str, str] = {}
        for name, value in element.attrib.items():
            key = str(name).rpartition("}")[2].rpartition(":")[2].lower()
            if key not in allowed:
                self.problem(element, f"unknown attribute {key!r} on {shown(element)}")
                continue
            found[key] = str(value)
        return found

    def text(self, element: etree._Element, *, strip: bool = True) -> str:
        for child in self.children(element):
            self.problem(child, f"{shown(child)} is not expected inside {shown(element)}")
        value = "".join(element.itertext())
        return value.strip() if strip else value

    # The document

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
            password=found.get("password") or None,
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
            self.read_param(child, spec, what)
        return spec

    def read_param(self, element: etree._Element, spec: CalendarSpec, what: str) -> None:
        line = element.sourceline or 1
        attrs = self.attributes(element, ("name",))
        raw_name = attrs.get("name", "").strip()
        if not raw_name:
            self.problem(element, f"{what}: a <param> needs a name attribute")
            return
        param = P.BY_KEY.get(raw_name.lower())
        if param is None:
            self.problem(
                element,
                f"{what}: unknown param {raw_name!r}; known params: "
                + ", ".join(known.name for known in P.PARAMS),
            )
            return
        value = self.text(element, strip=param.kind != "secret")
        if param.section == "resource":
            spec.resources.append(value.strip())
            spec.resource_lines.append(line)
            return
        if param.name in spec.lines:
            self.problem(
                element,
                f"{what}: param {param.name} given twice (also line {spec.lines[param.name]})",
            )
            return
        spec.lines[param.name] = line
        parsed = self.convert(element, param, value, what)
        if parsed is _INVALID:
            return
        if param.section == "calendar":
            if param.field == "password":
                spec.password = parsed or None
            elif param.field == "feed_key":
                spec.feed_key = parsed.strip() or None
            else:
                spec.values[param.field] = parsed
        elif param.section == "filter":
            spec.filter[param.field] = parsed
        else:
            edge, _, part = param.field.partition(".")
            related, offset = spec.alarms.get(edge, P.ALARM_DEFAULTS[edge])
            spec.alarms[edge] = (parsed, offset) if part == "related" else (related, parsed)

    def convert(self, element: etree._Element, param: P.Param, value: str, what: str) -> Any:
        if param.kind == "int":
            if not re.fullmatch(r"[+-]?\d+", value):
                self.problem(element, f"{what}: {param.name}: {value!r} is not a whole number")
                return _INVALID
            return int(value)
        if param.kind == "bool":
            lowered = value.lower()
            if lowered in P.TRUE_WORDS:
                return True
            if lowered in P.FALSE_WORDS:
                return False
            self.problem(element, f"{what}: {param.name}: {value!r} is not true or false")
            return _INVALID
        if param.kind == "list":
            try:
                CommaListOf(list(param.choices), param.what)(value)
            except ValidationError as exc:
                self.problem(element, f"{what}: {param.name}: {_messages(exc)}")
                return _INVALID
            return normalize_list(value, list(param.choices))
        if param.kind == "choice":
            for choice in param.choices:
                if value.lower() == choice.lower():
                    return choice
            self.problem(
                element,
                f"{what}: {param.name}: {value!r} is not one of {', '.join(param.choices)}",
            )
            return _INVALID
        return value

    # Checks across the document, and the models' own validation

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
            try:
                app.clean_fields(exclude=["name", "client_secret", "tenant", "client_id"])
            except ValidationError as exc:
                self.report(exc, auth.lines, auth.line, what)

    def check_calendar(self, spec: CalendarSpec, server_spec: ServerSpec | None) -> None:
        what = f"calendar {spec.calendar_id!r}"
        calendar = Calendar(
            calendar_id=spec.calendar_id,
            password=spec.password or "",
            **spec.values,
        )
        if spec.feed_key is not None:
            calendar.feed_key = spec.feed_key
        lines = {
            field_name: spec.lines.get(name, spec.line)
            for field_name, name in P.FIELD_NAMES.items()
        }
        try:
            calendar.full_clean(
                exclude=["server"], validate_unique=False, validate_constraints=False
            )
        except ValidationError as exc:
            self.report(exc, lines, spec.line, what)
        if spec.feed_key is not None and not re.fullmatch(r"[A-Za-z0-9_-]{16,64}", spec.feed_key):
            self.problem(
                spec.lines.get("feedKey", spec.line),
                f"{what}: feedKey: use 16 to 64 letters, digits, '-' or '_'",
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
                    self.problem(line, f"{what}: resource: {_messages(exc)}")
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


class _Invalid:
    """Marks a value that could not be read (its problem is already recorded)."""


_INVALID: Any = _Invalid()


def _messages(exc: ValidationError) -> str:
    return " ".join(exc.messages)


def _server_reference(raw: str) -> str:
    """'url(#serverId)' (the PHP connector's form), '#serverId' or 'serverId'."""
    value = raw.strip()
    match = re.fullmatch(r"url\(\s*['\"]?#?([^'\")]*?)['\"]?\s*\)", value, re.IGNORECASE)
    if match:
        return match.group(1).strip()
    return value.lstrip("#").strip()


def read_configuration(data: bytes) -> Configuration:
    """Parse and check a configuration.xml; ConfigError lists every problem."""
    root = parse_xml(data)
    reader = Reader()
    config = reader.read(root)
    reader.check(config)
    if reader.problems:
        raise ConfigError(reader.problems)
    return config
