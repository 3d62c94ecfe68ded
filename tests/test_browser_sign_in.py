"""Browser test of the delegated sign-in: Chromium, the live server and the fake identity platform.

The administrator clicks "Sign in" on the app registration, fills in the identity
platform's login form, and comes back signed in; after the sign-in is revoked, the
admin's banner offers "Re-authenticate", which runs the same round trip again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User

from accounts.models import AppRegistration, TokenCache
from accounts.tokens import acquire_token, clear_clients
from connector.core.errors import SourceError
from tests.fakes.identity import FakeIdentityPlatform
from tests.fixtures.browser import log_in
from tests.fixtures.identity import DELEGATED_ACCOUNT as ACCOUNT
from tests.fixtures.identity import DELEGATED_PASSWORD
from tests.fixtures.users import TEST_PASSWORD

pytestmark = pytest.mark.browser

SCOPE = "https://graph.microsoft.com/Calendars.Read.Shared"


@pytest.fixture
def tab(chromium: Any, live_server: Any) -> Iterator[Any]:
    """A fresh context that accepts the fake identity platform's throwaway certificate."""
    context = chromium.new_context(
        base_url=live_server.url,
        viewport={"width": 1280, "height": 860},
        locale="en-GB",
        ignore_https_errors=True,
    )
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


def fill_in_the_login_form(tab: Any, identity: FakeIdentityPlatform, password: str) -> None:
    tab.wait_for_url(f"{identity.url}/**")
    assert tab.input_value("#i0116") == ACCOUNT  # the login hint
    tab.fill("#i0118", password)
    tab.click("#idSIButton9")


def test_sign_in_round_trip_and_re_authentication(
    tab: Any,
    screenshot: Any,
    admin_user: User,
    delegated_app: AppRegistration,
    fake_identity: FakeIdentityPlatform,
) -> None:
    log_in(tab, "admin", TEST_PASSWORD)
    change_page = f"/admin/accounts/appregistration/{delegated_app.pk}/change/"
    tab.goto(change_page)
    assert tab.get_by_text("Nobody has signed in yet.").is_visible()

    tab.click("a.button:has-text('Sign in')")
    # A wrong password is refused by the identity platform, which shows its form again.
    fill_in_the_login_form(tab, fake_identity, "fake-wrong-password")
    assert "AADSTS50126" in tab.inner_text("#error")
    tab.fill("#i0118", DELEGATED_PASSWORD)
    tab.click("#idSIButton9")

    tab.wait_for_selector(".messagelist .success")
    assert f"Signed in as {ACCOUNT}" in tab.inner_text(".messagelist")
    assert tab.url.endswith(change_page)
    app = AppRegistration.objects.get(pk=delegated_app.pk)
    assert app.refresh_token.startswith("fake-refresh-") and not app.reauth_needed
    assert app.refresh_token not in tab.content()
    assert fake_identity.token_requests("authorization_code") == 1
    assert acquire_token(app, SCOPE).token

    # The sessions are revoked; once the access token is gone (expired, or refused by a
    # resource), the next token request finds it out.
    fake_identity.revoke_sign_in(ACCOUNT)
    TokenCache.objects.all().delete()
    clear_clients()
    with pytest.raises(SourceError):
        acquire_token(AppRegistration.objects.get(pk=app.pk), SCOPE)
    tab.goto("/admin/")
    banner = tab.locator(".ews-banner-reauth")
    assert "Re-authentication needed" in banner.inner_text()
    screenshot(tab, "re-authentication-banner")

    banner.locator("a.button:has-text('Re-authenticate')").click()
    fill_in_the_login_form(tab, fake_identity, DELEGATED_PASSWORD)
    tab.wait_for_selector(".messagelist .success")
    assert f"Signed in as {ACCOUNT}" in tab.inner_text(".messagelist")
    assert tab.locator(".ews-banner-reauth").count() == 0
    app = AppRegistration.objects.get(pk=app.pk)
    assert not app.reauth_needed
    clear_clients()
    assert acquire_token(app, SCOPE).token
    assert fake_identity.token_requests("authorization_code") == 2
