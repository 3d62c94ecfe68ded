"""A service account cannot be saved without a password (kept or new)."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import ServiceAccount

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/accounts/serviceaccount/add/"


def test_new_service_account_without_password_is_refused(admin_client: Client) -> None:
    response = admin_client.post(
        ADD_URL, {"name": "delegate", "username": "delegate@example.com", "password": ""}
    )
    assert response.status_code == 200
    assert "A service account needs its password" in response.content.decode()
    assert not ServiceAccount.objects.exists()


def test_new_service_account_with_password_is_saved(admin_client: Client) -> None:
    response = admin_client.post(
        ADD_URL,
        {"name": "delegate", "username": "delegate@example.com", "password": "fake-secret-1"},
    )
    assert response.status_code == 302
    assert ServiceAccount.objects.get().password == "fake-secret-1"


def test_empty_box_keeps_the_stored_password_and_saves(admin_client: Client) -> None:
    account = ServiceAccount.objects.create(
        name="delegate", username="delegate@example.com", password="fake-secret-1"
    )
    response = admin_client.post(
        f"/admin/accounts/serviceaccount/{account.pk}/change/",
        {"name": "renamed", "username": "delegate@example.com", "password": ""},
    )
    assert response.status_code == 302
    account.refresh_from_db()
    assert (account.name, account.password) == ("renamed", "fake-secret-1")


def test_stored_account_without_password_must_get_one(admin_client: Client) -> None:
    account = ServiceAccount.objects.create(
        name="delegate", username="delegate@example.com", password=""
    )
    response = admin_client.post(
        f"/admin/accounts/serviceaccount/{account.pk}/change/",
        {"name": "delegate", "username": "delegate@example.com", "password": ""},
    )
    assert response.status_code == 200
    assert "A service account needs its password" in response.content.decode()
