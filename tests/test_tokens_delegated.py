"""The delegated flow: a service account signs in once (authorization code + PKCE).

Its refresh token is kept encrypted and renewed; when it stops working the app
registration says "re-authentication needed".
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import time_machine
from django.db import connection

from accounts.models import AppRegistration, TokenCache
from accounts.tokens import acquire_token, clear_clients, finish_sign_in, start_sign_in
from connector.core.errors import SourceError
from tests.fakes.identity import FakeIdentityPlatform
from tests.fixtures.identity import DELEGATED_ACCOUNT as ACCOUNT
from tests.fixtures.identity import TENANT

REDIRECT = "https://signage.example.com/accounts/sign-in/done/"
SCOPE = "https://graph.microsoft.com/.default"


def browser_sign_in(flow: dict) -> dict[str, str]:
    """What the browser does: open auth_uri, sign in, come back with ?code=&state=."""
    answer = requests.get(flow["auth_uri"], allow_redirects=False, timeout=10)
    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert location.startswith(REDIRECT)
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


def sign_in(app: AppRegistration) -> str:
    flow = start_sign_in(app, REDIRECT)
    return finish_sign_in(app, flow, browser_sign_in(flow))


def test_sign_in_uses_pkce_and_keeps_the_refresh_token_encrypted(
    delegated_app: AppRegistration, fake_identity: FakeIdentityPlatform
) -> None:
    flow = start_sign_in(delegated_app, REDIRECT)
    query = parse_qs(urlsplit(flow["auth_uri"]).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["login_hint"] == [ACCOUNT]
    assert SCOPE in query["scope"][0]

    account = finish_sign_in(delegated_app, flow, browser_sign_in(flow))

    assert account == ACCOUNT
    stored = AppRegistration.objects.get(pk=delegated_app.pk)
    assert stored.refresh_token.startswith("fake-refresh-")
    assert stored.reauth_needed is False
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT refresh_token FROM accounts_appregistration WHERE id = %s",
            [delegated_app.pk],
        )
        (raw,) = cursor.fetchone()
    assert raw.startswith("fernet:") and stored.refresh_token not in raw
    assert fake_identity.token_requests("authorization_code") == 1


def test_tokens_come_from_the_sign_in_then_from_the_cache(
    delegated_app: AppRegistration, fake_identity: FakeIdentityPlatform
) -> None:
    start = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False) as traveller:
        sign_in(delegated_app)
        first = acquire_token(delegated_app, SCOPE)
        assert first.from_cache is True  # the sign-in brought it
        clear_clients()  # another process
        app = AppRegistration.objects.get(pk=delegated_app.pk)
        assert acquire_token(app, SCOPE).token == first.token
        assert fake_identity.is_valid_token(first.token, audience="https://graph.microsoft.com")
        assert fake_identity.token_requests() == 1

        traveller.shift(dt.timedelta(hours=1))
        renewed = acquire_token(app, SCOPE)
        assert renewed.from_cache is False
        assert fake_identity.is_valid_token(renewed.token)
        assert fake_identity.token_requests("refresh_token") == 1
        for _ in range(5):
            acquire_token(app, SCOPE)
        assert fake_identity.token_requests() == 2
    # The rotated refresh token was kept.
    assert AppRegistration.objects.get(pk=app.pk).refresh_token != delegated_app.refresh_token


def test_stored_refresh_token_serves_when_the_cache_is_gone(
    delegated_app: AppRegistration, fake_identity: FakeIdentityPlatform
) -> None:
    sign_in(delegated_app)
    TokenCache.objects.all().delete()
    clear_clients()
    app = AppRegistration.objects.get(pk=delegated_app.pk)
    token = acquire_token(app, "https://outlook.office365.com/.default")
    assert fake_identity.is_valid_token(token.token, audience="https://outlook.office365.com")
    assert fake_identity.token_requests("refresh_token") == 1


def test_revoked_refresh_token_means_reauthentication(
    delegated_app: AppRegistration, fake_identity: FakeIdentityPlatform
) -> None:
    sign_in(delegated_app)
    fake_identity.revoke_refresh_tokens()
    TokenCache.objects.all().delete()
    clear_clients()
    app = AppRegistration.objects.get(pk=delegated_app.pk)

    with pytest.raises(SourceError) as excinfo:
        acquire_token(app, SCOPE)

    error = excinfo.value
    assert error.code == "reauth-needed"
    assert "Sign in" in error.hint and ACCOUNT in error.hint
    assert "fake-refresh-" not in error.as_text()
    assert AppRegistration.objects.get(pk=app.pk).reauth_needed is True

    # Signing in again clears it.
    sign_in(app)
    assert AppRegistration.objects.get(pk=app.pk).reauth_needed is False
    assert acquire_token(app, SCOPE).token


def test_never_signed_in(
    delegated_app: AppRegistration, fake_identity: FakeIdentityPlatform
) -> None:
    with pytest.raises(SourceError) as excinfo:
        acquire_token(delegated_app, SCOPE)
    assert excinfo.value.code == "reauth-needed"
    assert "nobody has signed in yet" in excinfo.value.message
    assert fake_identity.token_requests() == 0


def test_signing_in_with_another_account_is_refused(
    delegated_app: AppRegistration, fake_identity: FakeIdentityPlatform
) -> None:
    fake_identity.add_user(TENANT, "someone@contoso.onmicrosoft.com")
    delegated_app.account = "someone-else@contoso.onmicrosoft.com"
    delegated_app.save()
    flow = start_sign_in(delegated_app, REDIRECT)
    flow_uri = flow["auth_uri"].replace(
        "someone-else%40contoso.onmicrosoft.com", "someone%40contoso.onmicrosoft.com"
    )
    answer = browser_sign_in({**flow, "auth_uri": flow_uri})
    with pytest.raises(SourceError) as excinfo:
        finish_sign_in(delegated_app, flow, answer)
    assert excinfo.value.code == "wrong-account"
    assert AppRegistration.objects.get(pk=delegated_app.pk).refresh_token == ""


def test_answer_from_another_sign_in_is_refused(
    delegated_app: AppRegistration, fake_identity: FakeIdentityPlatform
) -> None:
    first = start_sign_in(delegated_app, REDIRECT)
    second = start_sign_in(delegated_app, REDIRECT)
    with pytest.raises(SourceError) as excinfo:
        finish_sign_in(delegated_app, first, browser_sign_in(second))
    assert excinfo.value.code == "sign-in-state"


def test_error_sent_back_by_the_identity_platform(delegated_app: AppRegistration) -> None:
    flow = start_sign_in(delegated_app, REDIRECT)
    answer = {
        "error": "access_denied",
        "error_description": "AADSTS65004: User declined to consent to access the app.",
        "state": flow["state"],
    }
    with pytest.raises(SourceError) as excinfo:
        finish_sign_in(delegated_app, flow, answer)
    assert excinfo.value.code == "access_denied"
    assert "declined" in excinfo.value.hint
