"""The "Sign in" pages of a delegated app registration, through the browser's eyes."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from django.contrib.auth.models import User
from django.test import Client

from accounts.models import AppRegistration
from tests.fakes.identity import FakeIdentityPlatform
from tests.fixtures.identity import DELEGATED_ACCOUNT as ACCOUNT
from tests.fixtures.identity import sign_in_location
from tests.fixtures.users import TEST_PASSWORD


def logged_in(user: User) -> Client:
    client = Client()
    assert client.login(username=user.username, password=TEST_PASSWORD)
    return client


def test_admin_signs_in_the_service_account(
    admin_user: User, delegated_app: AppRegistration, fake_identity: FakeIdentityPlatform
) -> None:
    client = logged_in(admin_user)
    page = client.get(f"/admin/accounts/appregistration/{delegated_app.pk}/change/")
    sign_in_url = f"/accounts/app-registrations/{delegated_app.pk}/sign-in/"
    assert "Nobody has signed in yet." in page.content.decode()
    assert f'href="{sign_in_url}"' in page.content.decode()

    start = client.get(sign_in_url)
    assert start.status_code == 302
    auth_uri = start["Location"]
    assert auth_uri.startswith(f"{fake_identity.url}/")
    assert parse_qs(urlsplit(auth_uri).query)["redirect_uri"] == [
        "http://testserver/accounts/sign-in/done/"
    ]

    # The browser signs in at the identity platform and comes back with a code.
    back = sign_in_location(fake_identity, auth_uri)
    done = client.get(urlsplit(back).path + "?" + urlsplit(back).query, follow=True)

    assert done.status_code == 200
    page = done.content.decode()
    assert f"Signed in as {ACCOUNT}" in page
    assert "fake-refresh-" not in page
    stored = AppRegistration.objects.get(pk=delegated_app.pk)
    assert stored.refresh_token.startswith("fake-refresh-")
    assert stored.reauth_needed is False
    assert f"Signed in as {ACCOUNT}." in page


def test_the_admin_page_says_when_reauthentication_is_needed(
    admin_user: User, delegated_app: AppRegistration
) -> None:
    AppRegistration.objects.filter(pk=delegated_app.pk).update(
        reauth_needed=True, refresh_token="fake-refresh-old"
    )
    page = logged_in(admin_user).get(f"/admin/accounts/appregistration/{delegated_app.pk}/change/")
    assert "Re-authentication needed" in page.content.decode()
    assert "fake-refresh-old" not in page.content.decode()


def test_app_only_registrations_show_no_sign_in_link(
    admin_user: User, app_registration: AppRegistration
) -> None:
    page = logged_in(admin_user).get(
        f"/admin/accounts/appregistration/{app_registration.pk}/change/"
    )
    assert "/sign-in/" not in page.content.decode()


def test_coming_back_without_a_sign_in_in_progress(admin_user: User) -> None:
    done = logged_in(admin_user).get("/accounts/sign-in/done/?code=x&state=y", follow=True)
    assert "No sign-in was in progress" in done.content.decode()


def test_a_failed_sign_in_is_explained(admin_user: User, delegated_app: AppRegistration) -> None:
    client = logged_in(admin_user)
    start = client.get(f"/accounts/app-registrations/{delegated_app.pk}/sign-in/")
    state = parse_qs(urlsplit(start["Location"]).query)["state"][0]
    done = client.get(
        "/accounts/sign-in/done/",
        {
            "error": "access_denied",
            "error_description": "AADSTS65004: User declined to consent to access the app.",
            "state": state,
        },
        follow=True,
    )
    assert "User declined to consent" in done.content.decode()
    assert AppRegistration.objects.get(pk=delegated_app.pk).refresh_token == ""


def test_only_those_who_may_change_app_registrations(
    staff_user: User, outsider: User, delegated_app: AppRegistration
) -> None:
    url = f"/accounts/app-registrations/{delegated_app.pk}/sign-in/"
    assert Client().get(url).status_code == 302  # to the login page
    assert "/admin/login/" in Client().get(url)["Location"]
    assert logged_in(outsider).get(url).status_code == 302
    if not staff_user.has_perm("accounts.change_appregistration"):
        assert logged_in(staff_user).get(url).status_code == 403


def test_app_only_registrations_have_no_sign_in(
    admin_user: User, app_registration: AppRegistration
) -> None:
    url = f"/accounts/app-registrations/{app_registration.pk}/sign-in/"
    assert logged_in(admin_user).get(url).status_code == 404
