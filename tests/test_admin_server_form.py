"""The server form: the fields of its type only, and "Test connection" with unsaved settings."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from accounts.models import GRAPH_DEFAULT_BASE_URI, ServiceAccount
from connector.models import Server
from tests.fakes.ews import FakeExchange
from tests.fixtures.exchange import EWS_DELEGATE

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/connector/server/add/"
TEST_URL = "/admin/connector/server/add/test-connection/"


def server_post(**fields: Any) -> dict[str, Any]:
    data = {
        "server_id": "exchange",
        "type": "ews",
        "label": "",
        "base_uri": "",
        "autodiscover": "",
        "service_account": "",
        "http_scheme": "ntlm",
        "app_registration": "",
        "test_resource": "",
    }
    data.update({key: str(value) for key, value in fields.items()})
    return data


def test_form_tells_the_browser_which_fields_each_type_uses(admin_client: Client) -> None:
    text = admin_client.get(ADD_URL).content.decode()
    assert "/static/connector/server_form.js" in text
    found = re.search(r'data-type-fields="([^"]+)"', text)
    assert found is not None
    fields = found.group(1).replace("&quot;", '"')
    assert '"graph": ["base_uri", "app_registration"]' in fields
    assert '"ews": ["base_uri", "autodiscover", "service_account", "http_scheme"' in fields
    assert "&lt;base URI&gt;/EWS/Exchange.asmx" in text  # the help text, escaped


def test_graph_server_drops_the_fields_graph_does_not_use_and_gets_its_base_uri(
    admin_client: Client, app_registration: Any
) -> None:
    account = ServiceAccount.objects.create(
        name="d", username="d@example.com", password="fake-secret-d"
    )
    response = admin_client.post(
        ADD_URL,
        server_post(
            server_id="graph",
            type="graph",
            service_account=account.pk,  # left over from EWS, hidden in the browser
            autodiscover="someone@contoso.com",
            http_scheme="basic",
            app_registration=app_registration.pk,
        ),
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    server = Server.objects.get(server_id="graph")
    assert server.service_account is None
    assert server.autodiscover == ""
    assert server.http_scheme == Server.Scheme.NTLM  # the default, unused
    assert server.base_uri == GRAPH_DEFAULT_BASE_URI


def test_icalendar_server_drops_the_app_registration(
    admin_client: Client, app_registration: Any
) -> None:
    response = admin_client.post(
        ADD_URL,
        server_post(
            server_id="files",
            type="ics",
            base_uri="https://calendars.example.com/",
            app_registration=app_registration.pk,
        ),
    )
    assert response.status_code == 302
    assert Server.objects.get(server_id="files").app_registration is None


def test_ews_server_keeps_its_service_account_and_scheme(admin_client: Client) -> None:
    account = ServiceAccount.objects.create(
        name="d", username="d@example.com", password="fake-secret-d"
    )
    response = admin_client.post(
        ADD_URL,
        server_post(
            base_uri="https://mail.example.com", service_account=account.pk, http_scheme="basic"
        ),
    )
    assert response.status_code == 302
    server = Server.objects.get(server_id="exchange")
    assert (server.service_account, server.http_scheme) == (account, "basic")


def test_connection_test_reads_a_room_with_unsaved_settings(
    admin_client: Client, fake_ews: FakeExchange, ews_service_account: ServiceAccount
) -> None:
    response = admin_client.post(
        TEST_URL,
        server_post(
            base_uri=fake_ews.url,
            service_account=ews_service_account.pk,
            test_resource="room-a@contoso.com",
        ),
        HTTP_X_REQUESTED_WITH="fetch",
    )
    text = response.content.decode()
    assert response.status_code == 200
    assert 'data-outcome="ok"' in text
    assert "Connected and read room-a@contoso.com" in text
    assert "Nothing was saved" in text
    assert fake_ews.count_op("FindItem", mailbox="room-a@contoso.com") == 1
    assert not Server.objects.exists()


def test_connection_test_of_a_saved_server_uses_the_form_not_the_row(
    admin_client: Client, ews_server: Server, fake_ews: FakeExchange
) -> None:
    wrong = ServiceAccount.objects.create(
        name="wrong", username=EWS_DELEGATE, password="fake-wrong-password"
    )
    response = admin_client.post(
        f"/admin/connector/server/{ews_server.pk}/test-connection/",
        server_post(
            base_uri=fake_ews.url, service_account=wrong.pk, test_resource="room-a@contoso.com"
        ),
        HTTP_X_REQUESTED_WITH="fetch",
    )
    text = response.content.decode()
    assert 'data-outcome="failed"' in text
    assert '<code class="ews-code">' in text  # the upstream's code beside the words
    assert 'class="ews-hint"' in text
    ews_server.refresh_from_db()
    assert ews_server.service_account_id != wrong.pk  # nothing saved


def test_connection_test_names_what_is_missing(admin_client: Client) -> None:
    response = admin_client.post(TEST_URL, server_post(), HTTP_X_REQUESTED_WITH="fetch")
    text = response.content.decode()
    assert 'data-outcome="incomplete"' in text
    assert "Give a base URI" in text


def test_connection_test_without_script_answers_a_page(admin_client: Client) -> None:
    response = admin_client.post(TEST_URL, server_post())
    assert "<h1>Test connection</h1>" in response.content.decode()


def test_connection_test_needs_the_right_to_change_servers(client: Client, staff_user: Any) -> None:
    from tests.fixtures.users import TEST_PASSWORD

    client.login(username="staff", password=TEST_PASSWORD)
    assert client.post(TEST_URL, server_post()).status_code == 403
