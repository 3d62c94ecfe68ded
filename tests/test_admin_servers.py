"""The server admin: filters and search, plain-language errors, the Exchange Online warning."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.models import AppRegistration, ServiceAccount
from connector.models import Server

ADD_URL = "/admin/connector/server/add/"


@pytest.fixture
def account(db: None) -> ServiceAccount:
    return ServiceAccount.objects.create(
        name="delegate", username="delegate@example.com", password="fake-secret-delegate"
    )


@pytest.fixture
def app(db: None) -> AppRegistration:
    return AppRegistration.objects.create(
        name="contoso", tenant="contoso.onmicrosoft.com", client_id="1111", client_secret="x"
    )


def server_form(**fields: Any) -> dict[str, Any]:
    data = {
        "server_id": "exchange",
        "type": "ews",
        "label": "",
        "base_uri": "https://mail.example.com",
        "autodiscover": "",
        "http_scheme": "ntlm",
        "service_account": "",
        "app_registration": "",
    }
    data.update(fields)
    return data


def test_server_is_added_with_its_service_account(
    admin_client: Client, account: ServiceAccount
) -> None:
    response = admin_client.post(ADD_URL, server_form(service_account=str(account.pk)))

    assert response.status_code == 302
    assert Server.objects.get().service_account == account


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            # The service account left in the form is not Graph's (the form drops it).
            {"type": "graph", "base_uri": "https://graph.microsoft.com"},
            "Microsoft Graph needs an app registration.",
        ),
        ({"server_id": "my server"}, "An id may contain only letters, digits"),
        ({"base_uri": "mail.example.com"}, "Give a URL such as https://mail.example.com."),
        ({"service_account": ""}, "EWS needs a service account (on premises) or an app"),
    ],
)
def test_server_errors_are_explained(
    admin_client: Client, account: ServiceAccount, fields: dict[str, Any], message: str
) -> None:
    data = server_form(service_account=str(account.pk))
    data.update(fields)

    response = admin_client.post(ADD_URL, data)

    assert response.status_code == 200
    assert message.replace("'", "&#x27;") in response.content.decode()
    assert not Server.objects.exists()


def test_ews_at_exchange_online_is_flagged_on_the_change_page_and_the_list(
    admin_client: Client, app: AppRegistration
) -> None:
    server = Server.objects.create(
        server_id="o365", base_uri="https://outlook.office365.com", app_registration=app
    )
    Server.objects.create(server_id="graph", type="graph", app_registration=app)

    change = admin_client.get(f"/admin/connector/server/{server.pk}/change/").content.decode()
    listing = admin_client.get("/admin/connector/server/").content.decode()

    assert "switches off for good on 1 April 2027" in change
    assert "Servers concerned: o365." in listing
    assert listing.count("ends 2027-04-01") == 1


def test_on_premises_server_is_not_flagged(admin_client: Client, account: ServiceAccount) -> None:
    server = Server.objects.create(
        server_id="onprem", base_uri="https://mail.example.com", service_account=account
    )

    page = admin_client.get(f"/admin/connector/server/{server.pk}/change/").content.decode()

    assert "Exchange Online" not in page.split('id="content"')[1].split("<form")[0]


def test_list_filters_by_type_and_scheme_and_searches(
    admin_client: Client, account: ServiceAccount, app: AppRegistration
) -> None:
    Server.objects.create(
        server_id="onprem",
        label="Head office",
        base_uri="https://mail.example.com",
        http_scheme="basic",
        service_account=account,
    )
    Server.objects.create(server_id="cloud", type="graph", app_registration=app)

    graph_only = admin_client.get("/admin/connector/server/?type__exact=graph").content.decode()
    basic_only = admin_client.get("/admin/connector/server/?http_scheme__exact=basic").content
    searched = admin_client.get("/admin/connector/server/?q=head+office").content.decode()

    assert ">cloud<" in graph_only and ">onprem<" not in graph_only
    assert b">onprem<" in basic_only and b">cloud<" not in basic_only
    assert ">onprem<" in searched and ">cloud<" not in searched


def test_server_page_shows_no_secret(admin_client: Client, account: ServiceAccount) -> None:
    server = Server.objects.create(
        server_id="onprem", base_uri="https://mail.example.com", service_account=account
    )

    response = admin_client.get(f"/admin/connector/server/{server.pk}/change/")
    page = response.content.decode()

    # The change form itself, not a redirect (to the login page, say) with no secret in it.
    assert response.status_code == 200
    assert '<form method="post" id="server_form"' in page
    assert 'name="server_id" value="onprem"' in page
    assert 'name="base_uri" value="https://mail.example.com"' in page
    assert f'<option value="{account.pk}" selected>delegate (delegate@example.com)' in page
    assert "fake-secret-delegate" not in page
