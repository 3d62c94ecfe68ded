"""What the admin and configuration.xml refuse: overlong ids, base URIs with user info or
spaces, weak feed keys, and an unterminated CDATA, each with a short, clear message."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from accounts.models import AppRegistration, ServiceAccount
from connector import xmlconfig
from connector.models import Calendar, Server
from connector.models.calendars import new_feed_key
from connector.validators import feed_key_strength
from tests.xmlconfig_helpers import full_dump

LONG = "a" * 3000
LINE = re.compile(r"^line \d+: [^\n]+$")


def refused(data: bytes) -> list[str]:
    before = full_dump()
    with pytest.raises(xmlconfig.ConfigError) as caught:
        xmlconfig.import_configuration(data)
    problems = [str(problem) for problem in caught.value.problems]
    assert problems
    for problem in problems:
        assert LINE.match(problem), problem
    assert full_dump() == before
    return problems


def oauth_file(*, tenant: str = "contoso.onmicrosoft.com", client_id: str = "1111") -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<configuration>
  <servers>
    <server id="o365" type="graph">
      <baseuri>https://graph.microsoft.com</baseuri>
      <authentication type="oauth2-client-credentials">
        <tenant>{tenant}</tenant>
        <clientid>{client_id}</clientid>
        <clientsecret>fake-secret-limits</clientsecret>
      </authentication>
    </server>
  </servers>
  <calendars/>
</configuration>""".encode()


def server_file(base_uri: str, *, type_: str = "ews") -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<configuration>
  <servers>
    <server id="onprem" type="{type_}">
      <baseuri>{base_uri}</baseuri>
      <authentication type="http-authentication">
        <username>delegate@example.com</username>
        <password>fake-secret-limits</password>
      </authentication>
    </server>
  </servers>
  <calendars/>
</configuration>""".encode()


def feed_key_file(key: str) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<configuration>
  <servers>
    <server id="files" type="ics"><baseuri>https://files.example/</baseuri></server>
  </servers>
  <calendars>
    <calendar id="hall" server="url(#files)">
      <param name="resource">hall.ics</param>
      <param name="feedKey">{key}</param>
    </calendar>
  </calendars>
</configuration>""".encode()


# -- tenant and client id: 254 and 100 characters ------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"tenant": LONG}, "line 7: server 'o365': tenant: Ensure this value has at most 254"),
        ({"client_id": LONG}, "line 8: server 'o365': clientid: Ensure this value has at most 100"),
    ],
)
def test_import_refuses_an_overlong_tenant_or_client_id(
    db: None, fields: dict[str, str], expected: str
) -> None:
    problems = refused(oauth_file(**fields))
    assert any(problem.startswith(expected) for problem in problems), problems
    assert not AppRegistration.objects.exists()


def app_form(**fields: Any) -> dict[str, Any]:
    data = {
        "name": "contoso",
        "flow": "client_credentials",
        "tenant": "contoso.onmicrosoft.com",
        "client_id": "1111",
        "client_secret": "fake-secret-limits",
        "secret_expires": "",
        "authority": "https://login.microsoftonline.com",
        "account": "",
    }
    data.update(fields)
    return data


@pytest.mark.parametrize(
    ("field", "limit"),
    [("tenant", 254), ("client_id", 100)],
)
def test_admin_refuses_an_overlong_tenant_or_client_id(
    admin_client: Client, field: str, limit: int
) -> None:
    response = admin_client.post("/admin/accounts/appregistration/add/", app_form(**{field: LONG}))

    assert response.status_code == 200
    assert f"Ensure this value has at most {limit} characters (it has 3000)." in (
        response.content.decode()
    )
    assert not AppRegistration.objects.exists()


# -- base URIs: no user info, no spaces ----------------------------------------------


@pytest.mark.parametrize(
    ("base_uri", "message"),
    [
        ("https://user:pw@mail.example.com", "may not carry a user name or password"),
        ("https://delegate@mail.example.com", "may not carry a user name or password"),
        ("https://mail.example.com/my ews", "may not contain spaces"),
        ("https://mail.example.com\t", "may not contain spaces"),
        ("https://mail example.com", "may not contain spaces"),
    ],
)
def test_base_uri_with_user_info_or_spaces_is_refused(
    db: None, base_uri: str, message: str
) -> None:
    account = ServiceAccount.objects.create(name="d", username="d@example.com", password="x")
    for type_ in ("ews", "ics"):
        server = Server(server_id="s", type=type_, base_uri=base_uri, service_account=account)
        with pytest.raises(ValidationError) as caught:
            server.full_clean()
        assert any(message in text for text in caught.value.message_dict["base_uri"]), type_


def test_admin_explains_a_base_uri_with_a_password(admin_client: Client, db: None) -> None:
    account = ServiceAccount.objects.create(name="d", username="d@example.com", password="x")
    data = {
        "server_id": "exchange",
        "type": "ews",
        "label": "",
        "base_uri": "https://delegate:fake-secret-in-url@mail.example.com",
        "autodiscover": "",
        "http_scheme": "ntlm",
        "service_account": str(account.pk),
        "app_registration": "",
    }

    response = admin_client.post("/admin/connector/server/add/", data)

    assert response.status_code == 200
    page = response.content.decode()
    assert "may not carry a user name or password" in page
    assert not Server.objects.exists()


@pytest.mark.parametrize(
    ("base_uri", "message"),
    [
        ("https://delegate:pw@mail.example.com", "may not carry a user name or password"),
        ("https://mail.example.com/my%20ews x", "may not contain spaces"),
    ],
)
def test_import_refuses_a_base_uri_with_user_info_or_spaces(
    db: None, base_uri: str, message: str
) -> None:
    problems = refused(server_file(base_uri))
    assert any(
        p.startswith("line 5: server 'onprem': baseuri: ") and message in p for p in problems
    )


def test_a_folder_of_calendar_files_may_have_spaces(db: None) -> None:
    server = Server(server_id="files", type="ics", base_uri="/srv/Shared Calendars")
    server.full_clean()
    escaped = Server(server_id="web", type="ics", base_uri="https://files.example/my%20calendars/")
    escaped.full_clean()


# -- feed keys: long and varied enough ------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["a" * 16, "ab" * 12, "0123012301230123", "abcdefgabcdefgab"],
)
def test_a_weak_feed_key_is_refused(db: None, key: str) -> None:
    problems = refused(feed_key_file(key))
    assert problems == [
        "line 9: calendar 'hall': feedKey: use at least 8 different characters: a key such as "
        "aaaaaaaaaaaaaaaa is guessed at once (leave feedKey out for a random key)"
    ]


@pytest.mark.parametrize("key", ["short", "a" * 65, "has spaces in it here"])
def test_a_feed_key_of_the_wrong_form_is_refused(db: None, key: str) -> None:
    problems = refused(feed_key_file(key))
    assert problems == [
        "line 9: calendar 'hall': feedKey: use 16 to 64 letters, digits, '-' or '_'"
    ]


def test_a_varied_feed_key_is_imported(db: None) -> None:
    xmlconfig.import_configuration(feed_key_file("fake-secret-feed-key-0123456789"))
    assert Calendar.objects.get().feed_key == "fake-secret-feed-key-0123456789"


def test_generated_feed_keys_pass_the_rule() -> None:
    for _ in range(2000):
        feed_key_strength(new_feed_key())


def test_the_feed_key_rule_is_in_its_help_text() -> None:
    help_text = str(Calendar._meta.get_field("feed_key").help_text)
    assert "16 to 64" in help_text and "8 different" in help_text


# -- an unterminated CDATA: one short line --------------------------------------------


def test_an_unterminated_cdata_is_one_short_line(db: None) -> None:
    calendars = "\n".join(
        f'    <calendar id="c{n}" server="url(#files)"><param name="resource">r{n}.ics</param>'
        "</calendar>"
        for n in range(40)
    )
    data = f"""<?xml version="1.0" encoding="UTF-8"?>
<configuration>
  <servers>
    <server id="files" type="ics"><label><![CDATA[Files & more</label>
      <baseuri>https://files.example/</baseuri></server>
  </servers>
  <calendars>
{calendars}
  </calendars>
</configuration>
""".encode()

    problems = refused(data)

    assert problems == [
        "line 4: malformed XML: a CDATA section (<![CDATA[) is never closed with ]]>"
    ]


def test_an_unterminated_comment_is_one_short_line(db: None) -> None:
    data = (
        b'<?xml version="1.0"?>\n<configuration>\n<!-- old servers\n<servers/>\n</configuration>\n'
    )
    assert refused(data) == ["line 3: malformed XML: a comment (<!--) is never closed with -->"]


def test_a_parser_message_never_echoes_the_file(db: None) -> None:
    data = b'<?xml version="1.0"?>\n<configuration>\n<servers a="1\n' + b"x" * 500 + b"\n"
    for problem in refused(data):
        assert len(problem) < 220, problem


# -- a URL urlsplit cannot read: refused, never a crash ----------------------------------
# Found by tests/test_xml_import_properties.py: "Invalid IPv6 URL" escaped the import.


@pytest.mark.parametrize("base_uri", ["https://mail.example.com]>", "https://[mail"])
def test_a_base_uri_that_cannot_be_read_is_refused(db: None, base_uri: str) -> None:
    problems = refused(server_file(base_uri))
    assert "line 5: server 'onprem': baseuri: Give a URL such as https://mail.example.com." in (
        problems
    )
    for type_ in ("ews", "graph", "ics"):
        server = Server(server_id="s", type=type_, base_uri=base_uri)
        with pytest.raises(ValidationError) as caught:
            server.full_clean(exclude=["service_account", "app_registration"])
        assert "base_uri" in caught.value.message_dict, type_
        assert server.points_at_exchange_online_ews is False
        assert server.contains_resource("room.ics") is False


def test_a_resource_that_cannot_be_read_stays_outside_the_base_uri() -> None:
    server = Server(server_id="s", type="ics", base_uri="https://files.example/published/")
    assert server.contains_resource("https://[files.example/published/a.ics") is False
