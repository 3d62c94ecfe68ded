"""configuration.xml import, for generated files: it imports and round-trips, or it refuses
with "line N:" problems and changes nothing; it never raises anything else.

Valid files are built from strategies (every server type and authentication, every
param, prefixes and spellings as real files mix them); hostile ones are those files
cut, spliced and salted with declarations, entities, CDATA and bytes that are not
UTF-8. Each example runs in a savepoint that is rolled back, over a database that
already holds a configuration, so "changes nothing" means something.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from lxml import etree

from accounts.models import AppRegistration, ServiceAccount
from connector import xmlconfig
from connector.models import Alarm, Calendar, Filter, Server
from connector.models.calendars import FREE_BUSY, IMPORTANCES, SENSITIVITIES
from connector.xmlconfig import params as P
from tests.xmlconfig_helpers import configuration_dump, full_dump, read

LINE = re.compile(r"^line \d+: [^\n]+$")
NAMESPACES = ["urn:ews-calendar:configuration", "http://example.com/fcc", "urn:other"]

# Deterministic: the same examples on every run (no test that fails one day in ten);
# no example database written into the worktree.
PROPERTY = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# -- strategies: the pieces of a valid file ---------------------------------------------

# Text as XML 1.0 can carry it: no control characters (tab, line feed and carriage
# return aside), no surrogates, no unassigned code points (U+FFFE, U+FFFF).
xml_text = st.text(
    st.characters(
        codec="utf-8", exclude_categories=["Cs", "Cc", "Cn"], include_characters="\t\n\r"
    ),
    max_size=20,
)
ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,12}", fullmatch=True)
hosts = st.from_regex(r"[a-z]([a-z0-9-]{0,6}[a-z0-9])?(\.[a-z]{2,6}){1,2}", fullmatch=True)
emails = st.builds(
    "{}@{}".format, st.from_regex(r"[a-z0-9][a-z0-9._-]{0,8}", fullmatch=True), hosts
).filter(lambda address: ".." not in address and not address.split("@")[0].endswith("."))
guids = st.uuids().map(str)
dates = st.dates().map(lambda day: day.isoformat())
KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# At least 8 different characters (the feed key rule), then any: 16 to 36 in all.
strong_keys = st.builds(
    "{}{}".format,
    st.lists(st.sampled_from(KEY_ALPHABET), min_size=16, max_size=16, unique=True).map("".join),
    st.text(st.sampled_from(KEY_ALPHABET), max_size=20),
)


@st.composite
def spellings(draw: st.DrawFn, name: str) -> str:
    """A param name as files write it: the case does not matter."""
    return draw(st.sampled_from([name, name.lower(), name.upper()]))


@st.composite
def comma_lists(draw: st.DrawFn, choices: list[str]) -> str:
    picked = draw(st.lists(st.sampled_from(choices), unique=True, max_size=len(choices)))
    words = [draw(st.sampled_from([word, word.lower(), word.upper()])) for word in picked]
    return draw(st.sampled_from([",", ", ", " , "])).join(words)


@st.composite
def http_auth(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "type": "http-authentication",
        "scheme": draw(st.sampled_from(["", *Server.Scheme.values, "NTLM", "Basic"])),
        "username": draw(
            st.one_of(emails, st.from_regex(r"[A-Z]{2,6}\\[a-z]{1,8}", fullmatch=True))
        ),
        "password": draw(st.one_of(st.none(), xml_text)),
        "wrapped": draw(st.booleans()),  # inside <credentials>, or directly
    }


@st.composite
def oauth(draw: st.DrawFn, *, delegated: bool) -> dict[str, Any]:
    return {
        "type": "oauth2-delegated" if delegated else "oauth2-client-credentials",
        "tenant": draw(st.one_of(guids, hosts)),
        "clientid": draw(guids),
        "clientsecret": draw(st.one_of(st.none(), xml_text.filter(str.strip))),
        "expires": draw(st.one_of(st.none(), dates)),
        "authority": draw(
            st.sampled_from(
                [None, "https://login.microsoftonline.com", "https://login.microsoftonline.us"]
            )
        ),
        "account": draw(emails) if delegated else None,
    }


@st.composite
def servers(draw: st.DrawFn, server_id: str) -> dict[str, Any]:
    kind = draw(st.sampled_from(["ews", "ews-oauth", "ews-autodiscover", "graph", "ics"]))
    server: dict[str, Any] = {"id": server_id, "label": draw(st.one_of(st.none(), xml_text))}
    if kind == "ews":
        server.update(type="ews", baseuri=f"https://{draw(hosts)}", auth=draw(http_auth()))
    elif kind == "ews-oauth":
        server.update(
            type="ews", baseuri="https://outlook.office365.com", auth=draw(oauth(delegated=False))
        )
    elif kind == "ews-autodiscover":
        server.update(type="ews", autodiscover=draw(emails), auth=draw(http_auth()))
    elif kind == "graph":
        server.update(
            type="graph",
            baseuri=draw(st.sampled_from([None, "https://graph.microsoft.com"])),
            auth=draw(oauth(delegated=draw(st.booleans()))),
        )
    else:
        server.update(
            type="ics",
            baseuri=f"https://{draw(hosts)}/" + draw(st.sampled_from(["", "published/"])),
            auth=draw(st.one_of(st.none(), http_auth())),
        )
    return server


@st.composite
def calendar_params(draw: st.DrawFn, server: dict[str, Any]) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = []

    def maybe(name: str, values: st.SearchStrategy[str]) -> None:
        if draw(st.booleans()):
            params.append((draw(spellings(name)), draw(values)))

    if server["type"] == "ics":
        addresses = st.from_regex(r"[a-z0-9_-]{1,10}(/[a-z0-9_-]{1,10})?\.ics", fullmatch=True)
    else:
        addresses = emails
    resources = draw(st.lists(addresses, max_size=3, unique_by=str.lower))
    params += [(draw(spellings("resource")), resource) for resource in resources]
    maybe("requestWindow", st.integers(1, 366).map(str))
    maybe("cachePersistence", st.integers(0, 86400).map(str))
    maybe("sendCacheOnServerError", st.sampled_from([*P.TRUE_WORDS, *P.FALSE_WORDS, "True"]))
    if draw(st.booleans()):
        params.append((draw(spellings("username")), draw(emails)))
        maybe("password", xml_text)
    maybe("label", xml_text)
    related = st.sampled_from([*Alarm.Related.values, "EVENT-START"])
    maybe("startRelated", related)
    maybe("startOffset", st.integers(-7 * 86400, 7 * 86400).map(str))
    maybe("endRelated", related)
    maybe("endOffset", st.integers(-7 * 86400, 7 * 86400).map(str))
    words = st.sampled_from(["true", "false", "yes", "no", "1", "0"])
    maybe("filterIsCancelled", words)
    maybe("filterIsDraft", words)
    maybe("filterIsMeeting", words)
    maybe("filterSensitivity", comma_lists(SENSITIVITIES))
    maybe("filterImportance", comma_lists(IMPORTANCES))
    maybe("filterSubject", xml_text)
    maybe("filterFreeBusy", comma_lists(FREE_BUSY))
    maybe("maskSensitivity", comma_lists(SENSITIVITIES))
    maybe("detailLevel", st.sampled_from([*Filter.DetailLevel.values, "Limited"]))
    maybe("includeBody", words)
    maybe("timezone", st.sampled_from(["Europe/Paris", "UTC", "America/New_York", ""]))
    maybe("feedKey", strong_keys)
    return params


@st.composite
def configurations(draw: st.DrawFn) -> dict[str, Any]:
    server_ids = draw(st.lists(ids, min_size=1, max_size=3, unique=True))
    server_list = [draw(servers(server_id)) for server_id in server_ids]
    calendar_ids = draw(st.lists(ids, max_size=4, unique=True))
    calendars = []
    for calendar_id in calendar_ids:
        server = draw(st.sampled_from(server_list))
        reference = draw(st.sampled_from(["url(#{})", "#{}", "{}", "url( #{} )"]))
        calendars.append(
            {
                "id": calendar_id,
                "server": reference.format(server["id"]),
                "params": draw(calendar_params(server)),
            }
        )
    return {
        "servers": server_list,
        "calendars": calendars,
        "prefixes": draw(st.sampled_from(["none", "fcc", "scc", "mixed"])),
        "namespace": draw(st.sampled_from(NAMESPACES)),
        "cdata": draw(st.booleans()),
    }


# -- writing a configuration as a file --------------------------------------------------


class _Builder:
    def __init__(self, config: dict[str, Any], draw_prefix: Iterator[str]) -> None:
        self.config = config
        self.prefixes = draw_prefix
        namespace = config["namespace"]
        self.nsmap = {"fcc": namespace, "scc": namespace}

    def tag(self, name: str) -> str:
        prefix = next(self.prefixes)
        return name if prefix == "none" else f"{{{self.config['namespace']}}}{name}"

    def sub(self, parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
        element = etree.SubElement(parent, self.tag(name))
        if text is not None:
            cdata = self.config["cdata"] and "]]>" not in text and text.strip() == text
            element.text = etree.CDATA(text) if cdata and text else text
        return element

    def build(self) -> bytes:
        root = etree.Element(self.tag("configuration"), nsmap=self.nsmap)  # type: ignore[arg-type]
        servers = self.sub(root, "servers")
        for server in self.config["servers"]:
            element = self.sub(servers, "server")
            element.set("id", server["id"])
            element.set("type", server["type"])
            for name in ("baseuri", "autodiscover", "label"):
                if server.get(name) is not None:
                    self.sub(element, name, server[name])
            auth = server.get("auth")
            if auth is not None:
                self.authentication(element, auth)
        calendars = self.sub(root, "calendars")
        for calendar in self.config["calendars"]:
            element = self.sub(calendars, "calendar")
            element.set("id", calendar["id"])
            element.set("server", calendar["server"])
            for name, value in calendar["params"]:
                param = etree.SubElement(element, "param")
                param.set("name", name)
                param.text = value
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)

    def authentication(self, server: etree._Element, auth: dict[str, Any]) -> None:
        element = self.sub(server, "authentication")
        element.set("type", auth["type"])
        if auth["type"] == "http-authentication":
            if auth["scheme"]:
                self.sub(element, "scheme", auth["scheme"])
            holder = self.sub(element, "credentials") if auth["wrapped"] else element
            self.sub(holder, "username", auth["username"])
            if auth["password"] is not None:
                self.sub(holder, "password", auth["password"])
            return
        for name in ("tenant", "clientid", "account", "authority"):
            if auth.get(name) is not None:
                self.sub(element, name, auth[name])
        if auth["clientsecret"] is not None:
            secret = self.sub(element, "clientsecret", auth["clientsecret"])
            if auth["expires"] is not None:
                secret.set("expires", auth["expires"])


def _prefixes(config: dict[str, Any]) -> Iterator[str]:
    choice = config["prefixes"]
    if choice == "mixed":
        while True:
            yield from ("fcc", "scc", "none", "scc")
    while True:
        yield choice


def to_xml(config: dict[str, Any]) -> bytes:
    return _Builder(config, _prefixes(config)).build()


valid_files = configurations().map(to_xml)

# -- hostile files: valid ones cut, spliced and salted -----------------------------------

SALT = [
    b"<!DOCTYPE configuration [<!ENTITY x SYSTEM 'file:///etc/passwd'>]>",
    b'<!ENTITY lol "lol">',
    b"&x;",
    b"&amp;",
    b"&#0;",
    b"&#x110000;",
    b"<![CDATA[",
    b"]]>",
    b"<!--",
    b"-->",
    b"\x00",
    b"\xff\xfe",
    b"\xc3",
    b"\r\n",
    b'<?xml-stylesheet href="x"?>',
    b"<xi:include xmlns:xi='http://www.w3.org/2001/XInclude' href='/etc/passwd'/>",
    b'<param name="requestWindow">-1</param>',
    b'<param name="requestWindow">99999999999999999999999</param>',
    b'<param name="feedKey">aaaaaaaaaaaaaaaa</param>',
    b'<param name="resource"></param>',
    b'<param name="resource">' + b"r" * 600 + b"@example.com</param>",
    b'<server id="dup" type="ews"/><server id="dup" type="ics"/>',
    b'<calendar id="c" server="url(#nowhere)"/>',
    b'<calendar id="../../etc" server="x"/>',
    b"<baseuri>https://user:pw@host/</baseuri>",
    b"<tenant>" + b"t" * 3000 + b"</tenant>",
    b' id="x"',
    b' type="graph"',
    b"<",
    b">",
    b'"',
    b"</calendar>",
    b"</servers>",
]


# Values put in place of an element's text or an attribute's: the file stays XML.
ODD_VALUES = [
    b"",
    b" ",
    b"0",
    b"-1",
    b"+7",
    b"1e3",
    b"99999999999999999999",
    b"&amp;&lt;x&gt;",
    b"&#13;",
    b"\xe2\x80\xae",  # right-to-left override
    b"\xf0\x9f\x93\x85",
    b"a" * 300,
    b"https://user:pw@host/",
    b"https://host/ x",
    b"https://[host",
    b"https://host]>",
    b"url(#nowhere)",
    b"url(#)",
    b"ews",
    b"ics",
    b"graph",
    b"oauth2-delegated",
    b"true",
    b"Private,Private",
    b"Europe/Nowhere",
    b"day-end",
    b"room@contoso.com",
    b"../../etc/passwd",
]
_TEXT = re.compile(rb">([^<>]*)<")
_ATTRIBUTE = re.compile(rb'="([^"]*)"')


@st.composite
def hostile_files(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(valid_files))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(
            st.sampled_from(["value", "value", "cut", "salt", "bytes", "repeat", "truncate"])
        )
        at = draw(st.integers(0, len(data)))
        if kind == "value":
            pattern = draw(st.sampled_from([_TEXT, _ATTRIBUTE]))
            spots = list(pattern.finditer(bytes(data)))
            if spots:
                spot = draw(st.sampled_from(spots))
                data[spot.start(1) : spot.end(1)] = draw(st.sampled_from(ODD_VALUES))
        elif kind == "cut":
            del data[at : at + draw(st.integers(1, 40))]
        elif kind == "salt":
            data[at:at] = draw(st.sampled_from(SALT))
        elif kind == "bytes":
            data[at : at + draw(st.integers(0, 4))] = draw(st.binary(min_size=1, max_size=6))
        elif kind == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 80))]
        else:
            del data[at:]
    return bytes(data)


# -- the property -----------------------------------------------------------------------


@pytest.fixture
def existing(db: None) -> None:
    xmlconfig.import_configuration(read("extensions_every_param.xml"))


@contextmanager
def rolled_back() -> Iterator[None]:
    """Each example starts from the same database: its writes are undone."""
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def empty_the_database() -> None:
    Calendar.objects.all().delete()
    Server.objects.all().delete()
    ServiceAccount.objects.all().delete()
    AppRegistration.objects.all().delete()


def import_or_refuse(data: bytes) -> list[str]:
    """[] when imported (and round-tripped); the problems when refused, changing nothing."""
    before = full_dump()
    try:
        xmlconfig.import_configuration(data)
    except xmlconfig.ConfigError as exc:
        problems = [str(problem) for problem in exc.problems]
        assert problems
        for problem in problems:
            assert LINE.match(problem), problem
        assert full_dump() == before
        return problems
    imported = full_dump()
    first = configuration_dump()
    exported = xmlconfig.export_configuration(include_secrets=True)
    # Over the same database, the export is the configuration already there.
    plan = xmlconfig.import_configuration(exported.encode())
    assert plan.is_empty, plan.lines()
    assert full_dump() == imported
    # Into an empty database, it makes the same configuration.
    empty_the_database()
    xmlconfig.import_configuration(exported.encode())
    assert in_use(configuration_dump()) == in_use(first)
    assert xmlconfig.export_configuration(include_secrets=True) == exported
    return []


def in_use(dump: dict[str, Any]) -> dict[str, Any]:
    """The configuration as the file says it: what each server uses, not credential names.

    An import keeps credentials no server uses any more, and names a new one after
    the first server that needs it: in an empty database that may be another server
    (the export writes servers in id order), and the file never names credentials.
    """
    servers = {
        server_id: {
            **server,
            "credential": None
            if server["credential"] is None
            else {k: v for k, v in server["credential"].items() if k != "name"},
        }
        for server_id, server in dump["servers"].items()
    }
    return {"servers": servers, "calendars": dump["calendars"]}


@settings(PROPERTY, max_examples=40)
@given(data=valid_files)
def test_a_valid_file_imports_and_round_trips(existing: None, data: bytes) -> None:
    with rolled_back():
        assert import_or_refuse(data) == [], data.decode()


@settings(PROPERTY, max_examples=80)
@given(data=hostile_files())
def test_a_hostile_file_imports_and_round_trips_or_is_refused_changing_nothing(
    existing: None, data: bytes
) -> None:
    with rolled_back():
        problems = import_or_refuse(data)
    # --hypothesis-show-statistics: how many still import (and round-trip).
    event("refused" if problems else "imported")
