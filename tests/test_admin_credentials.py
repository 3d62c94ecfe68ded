"""The credential admin: secrets entered, never shown back, kept when left empty."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import AppRegistration, ServiceAccount


@pytest.fixture
def account(db: None) -> ServiceAccount:
    return ServiceAccount.objects.create(
        name="delegate", username="delegate@example.com", password="fake-secret-account-pwd"
    )


@pytest.fixture
def app(db: None) -> AppRegistration:
    return AppRegistration.objects.create(
        name="contoso",
        tenant="contoso.onmicrosoft.com",
        client_id="11111111-1111-1111-1111-111111111111",
        client_secret="fake-secret-client-secret",
        secret_expires=timezone.localdate() + dt.timedelta(days=12),
    )


def app_form(app: AppRegistration, **fields: Any) -> dict[str, Any]:
    data = {
        "name": app.name,
        "flow": app.flow,
        "tenant": app.tenant,
        "client_id": app.client_id,
        "client_secret": "",
        "secret_expires": app.secret_expires.isoformat() if app.secret_expires else "",
        "authority": app.authority,
        "account": app.account,
    }
    data.update(fields)
    return data


def test_service_account_password_is_never_shown_back(
    admin_client: Client, account: ServiceAccount
) -> None:
    page = admin_client.get(f"/admin/accounts/serviceaccount/{account.pk}/change/")

    assert page.status_code == 200
    assert b"fake-secret-account-pwd" not in page.content
    assert re.search(
        rb'<input type="password" name="password"[^>]*placeholder="\(stored', page.content
    )


def test_empty_password_box_keeps_the_stored_password(
    admin_client: Client, account: ServiceAccount
) -> None:
    response = admin_client.post(
        f"/admin/accounts/serviceaccount/{account.pk}/change/",
        {"name": "delegate", "username": "DOMAIN\\delegate", "password": ""},
    )

    assert response.status_code == 302
    account.refresh_from_db()
    assert account.username == "DOMAIN\\delegate"
    assert account.password == "fake-secret-account-pwd"


def test_new_password_replaces_the_stored_one(
    admin_client: Client, account: ServiceAccount
) -> None:
    admin_client.post(
        f"/admin/accounts/serviceaccount/{account.pk}/change/",
        {"name": "delegate", "username": "delegate@example.com", "password": "fake-secret-new"},
    )

    account.refresh_from_db()
    assert account.password == "fake-secret-new"


def test_history_of_a_password_change_names_the_field_not_the_value(
    admin_client: Client, account: ServiceAccount
) -> None:
    admin_client.post(
        f"/admin/accounts/serviceaccount/{account.pk}/change/",
        {"name": "delegate", "username": "delegate@example.com", "password": "fake-secret-new"},
    )

    page = admin_client.get(f"/admin/accounts/serviceaccount/{account.pk}/history/")

    assert b"Changed Password." in page.content
    assert b"fake-secret" not in page.content


def test_new_service_account_is_stored_encrypted(admin_client: Client, db: None) -> None:
    response = admin_client.post(
        "/admin/accounts/serviceaccount/add/",
        {"name": "hq", "username": "hq@example.com", "password": "fake-secret-hq"},
    )

    assert response.status_code == 302
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT password FROM accounts_serviceaccount")
        (stored,) = cursor.fetchone()
    assert stored.startswith("fernet:")
    assert "fake-secret-hq" not in stored
    assert ServiceAccount.objects.get().password == "fake-secret-hq"


def test_client_secret_is_never_shown_back_and_kept_when_left_empty(
    admin_client: Client, app: AppRegistration
) -> None:
    url = f"/admin/accounts/appregistration/{app.pk}/change/"
    assert b"fake-secret-client-secret" not in admin_client.get(url).content

    response = admin_client.post(url, app_form(app, tenant="fabrikam.onmicrosoft.com"))

    assert response.status_code == 302
    app.refresh_from_db()
    assert app.tenant == "fabrikam.onmicrosoft.com"
    assert app.client_secret == "fake-secret-client-secret"


def test_list_shows_the_secret_expiry(admin_client: Client, app: AppRegistration) -> None:
    page = admin_client.get("/admin/accounts/appregistration/").content.decode()

    assert f"{app.secret_expires:%Y-%m-%d} (in 12 days)" in page
    assert 'class="status status-expiring"' in page


def test_list_filters_by_secret_expiry(admin_client: Client, app: AppRegistration) -> None:
    AppRegistration.objects.create(
        name="fresh",
        tenant="t",
        client_id="22222222-2222-2222-2222-222222222222",
        secret_expires=timezone.localdate() + dt.timedelta(days=300),
    )

    expiring = admin_client.get("/admin/accounts/appregistration/?expiry=expiring").content
    valid = admin_client.get("/admin/accounts/appregistration/?expiry=ok").content

    assert b">contoso<" in expiring and b">fresh<" not in expiring
    assert b">fresh<" in valid and b">contoso<" not in valid


def test_delegated_registration_needs_the_account(admin_client: Client, db: None) -> None:
    response = admin_client.post(
        "/admin/accounts/appregistration/add/",
        {
            "name": "signage",
            "flow": "delegated",
            "tenant": "contoso.onmicrosoft.com",
            "client_id": "33333333-3333-3333-3333-333333333333",
            "authority": "https://login.microsoftonline.com",
            "account": "",
        },
    )

    assert response.status_code == 200
    assert b"The delegated flow needs the service account&#x27;s address." in response.content
    assert not AppRegistration.objects.exists()


def test_authority_without_a_scheme_means_https(admin_client: Client, app: AppRegistration) -> None:
    admin_client.post(
        f"/admin/accounts/appregistration/{app.pk}/change/",
        app_form(app, authority="login.microsoftonline.us"),
    )

    app.refresh_from_db()
    assert app.authority == "https://login.microsoftonline.us"
