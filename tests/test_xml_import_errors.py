"""An invalid configuration.xml changes nothing and reports every problem as "line N: ..."."""

from __future__ import annotations

import re

import pytest
from django.test import override_settings

from connector import xmlconfig
from tests.xmlconfig_helpers import full_dump, read

LINE = re.compile(r"^line \d+: .+")


@pytest.fixture
def existing_configuration(db: None) -> str:
    """A database with a configuration already in it, and its full dump."""
    xmlconfig.import_configuration(read("extensions_every_param.xml"))
    return full_dump()


def refused(data: bytes) -> list[str]:
    with pytest.raises(xmlconfig.ConfigError) as caught:
        xmlconfig.import_configuration(data)
    problems = [str(problem) for problem in caught.value.problems]
    assert problems
    for problem in problems:
        assert LINE.match(problem), problem
    return problems


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "invalid_malformed.xml",
            "line 6: malformed XML: Opening and ending tag mismatch: server line 4 and servers",
        ),
        (
            "invalid_unknown_server.xml",
            "line 15: calendar 'room' refers to unknown server 'nosuchserver' "
            "(servers in this file: serverId)",
        ),
        ("invalid_duplicate_id.xml", "line 18: duplicate calendar id 'room' (also line 15)"),
        (
            "invalid_request_window_abc.xml",
            "line 17: calendar 'room': requestWindow: 'abc' is not a whole number",
        ),
        (
            "invalid_unknown_scheme.xml",
            "line 7: server 'serverId': unknown scheme 'kerberos5'; use ntlm, basic, digest "
            "or gssnegotiate",
        ),
        ("invalid_unknown_param.xml", "line 17: calendar 'room': unknown param 'refreshEvery'"),
        (
            "invalid_xxe.xml",
            "line 2: <!DOCTYPE> is refused: configuration.xml may not declare a DTD or entities",
        ),
        (
            "invalid_billion_laughs.xml",
            "line 2: <!DOCTYPE> is refused: configuration.xml may not declare a DTD or entities",
        ),
    ],
)
def test_invalid_file_is_refused_with_its_line_and_changes_nothing(
    existing_configuration: str, name: str, expected: str
) -> None:
    problems = refused(read(name))

    assert any(problem.startswith(expected) for problem in problems), problems
    assert full_dump() == existing_configuration


@pytest.mark.parametrize(
    "name",
    ["invalid_unknown_server.xml", "invalid_duplicate_id.xml", "invalid_request_window_abc.xml"],
)
def test_invalid_file_changes_nothing_in_an_empty_database(db: None, name: str) -> None:
    before = full_dump()

    refused(read(name))

    assert full_dump() == before


def test_every_problem_is_reported_not_only_the_first(db: None) -> None:
    problems = refused(read("invalid_many_problems.xml"))

    assert problems == [
        "line 7: server 'serverId': unknown scheme 'kerberos5'; use ntlm, basic, digest or "
        "gssnegotiate",
        "line 14: duplicate server id 'serverId' (also line 4)",
        "line 16: server 'graph': authentication: Microsoft Graph does not take HTTP "
        "credentials; choose an app registration.",
        "line 16: server 'graph': authentication: Microsoft Graph needs an app registration.",
        "line 25: calendar 'room': resource: not an address is not an SMTP address (expected "
        "something like room@contoso.com).",
        "line 26: calendar 'room': requestWindow: 'abc' is not a whole number",
        "line 27: calendar 'room': timezone: Mars/Olympus_Mons is not a known time zone; use "
        "an IANA name such as Europe/Paris.",
        "line 28: calendar 'room': startOffset: 'ten minutes' is not a whole number",
        "line 29: calendar 'room': filterSensitivity: Secret is not a sensitivity; use a comma "
        "list of Normal, Personal, Private, Confidential.",
        problems[9],  # the unknown param, with the list of known ones
        "line 32: calendar 'room with spaces' refers to unknown server 'elsewhere' (servers in "
        "this file: graph, serverId)",
        "line 32: calendar 'room with spaces': id: An id may contain only letters, digits, '.', "
        "'_', '~' and '-', and must start with a letter or digit (it is part of the feed's URL).",
    ]
    assert problems[9].startswith("line 30: calendar 'room': unknown param 'colour'; known")


def test_xxe_file_never_reads_the_file_it_names(db: None) -> None:
    problems = refused(read("invalid_xxe.xml"))

    assert not any("root:" in problem for problem in problems)


def test_entity_declaration_is_refused_even_without_doctype_keyword_position(db: None) -> None:
    data = b'<?xml version="1.0"?>\n<!DOCTYPE c SYSTEM "http://127.0.0.1:9/evil.dtd">\n<c/>'

    assert refused(data) == [
        "line 2: <!DOCTYPE> is refused: configuration.xml may not declare a DTD or entities"
    ]


def test_doctype_mentioned_in_a_comment_is_harmless(db: None) -> None:
    data = (
        b'<?xml version="1.0"?>\n<!-- never write <!DOCTYPE here -->\n'
        b"<configuration><servers/><calendars/></configuration>"
    )

    plan = xmlconfig.import_configuration(data, dry_run=True)

    assert plan.is_empty


@override_settings(CONFIG_MAX_BYTES=2000)
def test_file_over_the_size_limit_is_refused(existing_configuration: str) -> None:
    data = read("spec_example.xml") + b"<!--" + b" " * 2000 + b"-->"

    problems = refused(data)

    assert len(problems) == 1
    assert problems[0].startswith("line 1: the file is ")
    assert "over the limit of 2,000 bytes (CONFIG_MAX_BYTES)" in problems[0]
    assert full_dump() == existing_configuration


def test_file_that_is_not_utf8_is_refused_at_its_line(db: None) -> None:
    data = read("manual_5_2_label.xml").replace(b"My Room", "Salle été".encode("latin-1"))

    problems = refused(data)

    assert problems[0].startswith("line ")
    assert "not UTF-8" in problems[0]


def test_empty_file_is_refused(db: None) -> None:
    assert refused(b"  \n") == ["line 1: the file is empty"]


def test_wrong_root_element_is_refused(db: None) -> None:
    assert refused(b"<?xml version='1.0'?>\n<calendars/>") == [
        "line 2: the root element is <calendars>; expected <configuration>"
    ]


def test_unknown_elements_and_attributes_are_reported(db: None) -> None:
    data = b"""<configuration>
  <servers>
    <server id="s" type="ews" colour="red">
      <baseuri>https://mail.example.com</baseuri>
      <port>443</port>
      <authentication type="http-authentication">
        <credentials><username>u@example.com</username></credentials>
      </authentication>
    </server>
  </servers>
  <calendars><calendar id="c" server="url(#s)"><resource>r@example.com</resource>
  </calendar></calendars>
  <extras/>
</configuration>"""

    assert refused(data) == [
        "line 3: unknown attribute 'colour' on <server>",
        "line 5: server 's': unknown element <port>",
        "line 11: calendar 'c': unknown element <resource>; expected <param>",
        "line 13: unknown element <extras> in <configuration>",
    ]


def test_bad_values_of_every_kind_are_reported(db: None) -> None:
    data = b"""<configuration>
  <servers>
    <server id="s" type="exchange"/>
    <server id="o" type="graph">
      <authentication type="oauth2-client-credentials">
        <tenant>contoso.onmicrosoft.com</tenant>
        <clientsecret expires="next year">fake-secret-x</clientsecret>
        <authority>not a url</authority>
      </authentication>
    </server>
    <server id="e" type="ews"><baseuri>ftp://mail</baseuri>
      <authentication type="kerberos"/></server>
  </servers>
  <calendars>
    <calendar id="c" server="url(#o)">
      <param name="sendCacheOnServerError">perhaps</param>
      <param name="requestWindow">0</param>
      <param name="requestWindow">3</param>
      <param name="startRelated">lunch</param>
      <param name="detailLevel">everything</param>
      <param name="resource">a@example.com</param>
      <param name="resource">A@example.com</param>
      <param name="feedKey">short</param>
      <param>x</param>
    </calendar>
    <calendar server="url(#o)"/>
  </calendars>
</configuration>"""

    problems = refused(data)

    assert problems == [
        "line 3: server 's': unknown type 'exchange'; use ews, graph or ics",
        "line 5: server 'o': oauth2-client-credentials needs a <clientid>",
        "line 7: server 'o': expires='next year' is not a date (YYYY-MM-DD)",
        "line 8: server 'o': authority: Enter a valid URL.",
        "line 11: server 'e': authentication: EWS needs a service account (on premises) or an "
        "app registration (Exchange Online).",
        "line 11: server 'e': baseuri: Give a URL such as https://mail.example.com.",
        "line 12: server 'e': unknown authentication type 'kerberos'; use "
        "http-authentication, oauth2-client-credentials or oauth2-delegated",
        "line 16: calendar 'c': sendCacheOnServerError: 'perhaps' is not true or false",
        "line 17: calendar 'c': requestWindow: Ensure this value is greater than or equal to 1.",
        "line 18: calendar 'c': param requestWindow given twice (also line 17)",
        "line 19: calendar 'c': startRelated: 'lunch' is not one of event-start, event-end, "
        "day-start, day-end",
        "line 20: calendar 'c': detailLevel: 'everything' is not one of full, limited, "
        "availability",
        "line 22: calendar 'c': resource A@example.com listed twice (also line 21)",
        "line 23: calendar 'c': feedKey: use 16 to 64 letters, digits, '-' or '_'",
        "line 24: calendar 'c': a <param> needs a name attribute",
        "line 26: a <calendar> needs an id attribute",
    ]


def test_problems_of_an_earlier_file_do_not_leak_into_the_next(db: None) -> None:
    # lxml keeps a per-thread error log; each file must be judged on its own.
    refused(read("invalid_malformed.xml"))

    assert refused(b"<configuration>\n<servers>\n</configuration>") == [
        "line 3: malformed XML: Opening and ending tag mismatch: servers line 2 and configuration"
    ]
    xmlconfig.import_configuration(read("undeclared_prefixes.xml"), dry_run=True)
