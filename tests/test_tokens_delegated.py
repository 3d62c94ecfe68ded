"""The delegated flow: a service account signs in once (authorization code + PKCE).

Its refresh token is kept encrypted and renewed; when it stops working the app
registration says "re-authentication needed".
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine
from django.core import mail
from django.db import connection

from accounts.models import AppRegistration, TokenCache
from accounts.tokens import acquire_token, clear_clients, finish_sign_in, start_sign_in
from connector.core.errors import SourceError
from tests.fakes.identity import FakeIdentityPlatform
from tests.fixtures.identity import DELEGATED_ACCOUNT as ACCOUNT
from tests.fixtures.identity import (
    DELEGATED_PASSWORD,
    GRAPH_CLIENT_ID,
    TENANT,
    sign_in_location,
)

REDIRECT = "https://signage.example.com/accounts/sign-in/done/"
SCOPE = "https://graph.microsoft.com/Calendars.Read.Shared"
EWS_SCOPE = "https://outlook.office365.com/EWS.AccessAsUser.All"


def browser_sign_in(identity: FakeIdentityPlatform, flow: dict, account: str = ACCOUNT) -> dict:
    """What the browser does: open auth_uri, sign in, come back with ?code=&state=."""
    location = sign_in_location(identity, flow["auth_uri"], account)
    assert location.startswith(REDIRECT)
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


def sign_in(app: AppRegistration, identity: FakeIdentityPlatform) -> str:
    flow = start_sign_in(app, REDIRECT)
    return finish_sign_in(app, flow, browser_sign_in(identity, flow))


def test_sign_in_uses_pkce_and_keeps_the_refresh_token_encrypted(
    delegated_app: AppRegistration, fake_identity: FakeIdentityPlatform
) -> None:
    flow = start_sign_in(delegated_app, REDIRECT)
    query = parse_qs(urlsplit(flow["auth_uri"]).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["login_hint"] == [ACCOUNT]
    assert SCOPE in query["scope"][0]

    account = finish_sign_in(delegated_app, flow, browser_sign_in(fake_identity, flow))

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
        sign_in(delegated_app, fake_identity)
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
    fake_identity.consent(GRAPH_CLIENT_ID, EWS_SCOPE)  # an administrator's consent
    sign_in(delegated_app, fake_identity)
    TokenCache.objects.all().delete()
    clear_clients()
    app = AppRegistration.objects.get(pk=delegated_app.pk)
    token = acquire_token(app, EWS_SCOPE)
    assert fake_identity.is_valid_token(token.token, audience="https://outlook.office365.com")
    assert fake_identity.token_info(token.token).scopes == {"EWS.AccessAsUser.All"}
    assert fake_identity.token_requests("refresh_token") == 1


def test_revoked_refresh_token_means_reauthentication(
    delegated_app: AppRegistration, fake_identity: FakeIdentityPlatform
) -> None:
    sign_in(delegated_app, fake_identity)
    fake_identity.revoke_refresh_tokens()
    TokenCache.objects.all().delete()
    clear_clients()
    app = AppRegistration.objects.get(pk=delegated_app.pk)

    with pytest.raises(SourceError) as excinfo:
        acquire_token(app, SCOPE)

    error = excinfo.value
    assert error.code == "reauth-needed"
    assert "Re-authenticate" in error.hint and ACCOUNT in error.hint
    assert "fake-refresh-" not in error.as_text()
    assert AppRegistration.objects.get(pk=app.pk).reauth_needed is True

    # Signing in again clears it.
    sign_in(app, fake_identity)
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
    fake_identity.add_user(TENANT, "someone@contoso.onmicrosoft.com", DELEGATED_PASSWORD)
    delegated_app.account = "someone-else@contoso.onmicrosoft.com"
    delegated_app.save()
    flow = start_sign_in(delegated_app, REDIRECT)
    # At the login form, someone types another account than the one suggested.
    answer = browser_sign_in(fake_identity, flow, "someone@contoso.onmicrosoft.com")
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
        finish_sign_in(delegated_app, first, browser_sign_in(fake_identity, second))
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


@pytest.mark.parametrize(
    ("how", "code"),
    [
        ("revoke_sign_in", "AADSTS50173"),  # sessions revoked, password changed
        ("revoke_refresh_tokens", "AADSTS700082"),  # expired after 90 days unused
        ("withdraw_consent", "AADSTS65001"),  # the app's permission removed
    ],
)
def test_a_refused_refresh_token_is_one_incident_with_one_mail(
    settings: Any,
    delegated_app: AppRegistration,
    fake_identity: FakeIdentityPlatform,
    how: str,
    code: str,
) -> None:
    settings.ADMINS = [("Ops", "ops@example.com")]
    sign_in(delegated_app, fake_identity)
    if how == "revoke_sign_in":
        fake_identity.revoke_sign_in(ACCOUNT)
    elif how == "withdraw_consent":
        fake_identity.withdraw_consent(GRAPH_CLIENT_ID)
    else:
        fake_identity.revoke_refresh_tokens()
    TokenCache.objects.all().delete()
    clear_clients()
    app = AppRegistration.objects.get(pk=delegated_app.pk)
    sent_before = fake_identity.token_requests()

    with pytest.raises(SourceError) as first:
        acquire_token(app, SCOPE)
    assert first.value.code == "reauth-needed"
    assert first.value.message.startswith("Re-authentication needed")
    assert code in first.value.message
    assert "consent" not in first.value.hint.split(".")[0]
    # Every later calendar is told the same without asking the identity platform again,
    # and no more mail goes out.
    for _ in range(3):
        with pytest.raises(SourceError) as again:
            acquire_token(AppRegistration.objects.get(pk=app.pk), SCOPE)
        assert again.value.code == "reauth-needed"
    assert fake_identity.token_requests() == sent_before + 1
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["ops@example.com"]
    assert "Re-authentication needed" in message.subject and app.name in message.subject
    assert "Re-authenticate" in message.body and code in message.body
    assert "fake-refresh-" not in message.body and "fake-access-" not in message.body

    # Signing in again ends the incident: the next one mails again.
    fake_identity.consent(GRAPH_CLIENT_ID, SCOPE)
    sign_in(app, fake_identity)
    assert acquire_token(AppRegistration.objects.get(pk=app.pk), SCOPE).token
    fake_identity.revoke_sign_in(ACCOUNT)
    TokenCache.objects.all().delete()
    clear_clients()
    with pytest.raises(SourceError):
        acquire_token(AppRegistration.objects.get(pk=app.pk), SCOPE)
    assert len(mail.outbox) == 2


def test_no_mail_when_admins_is_empty(
    settings: Any, delegated_app: AppRegistration, fake_identity: FakeIdentityPlatform
) -> None:
    settings.ADMINS = []
    sign_in(delegated_app, fake_identity)
    fake_identity.revoke_sign_in(ACCOUNT)
    TokenCache.objects.all().delete()
    clear_clients()
    with pytest.raises(SourceError) as excinfo:
        acquire_token(AppRegistration.objects.get(pk=delegated_app.pk), SCOPE)
    assert excinfo.value.code == "reauth-needed"
    assert mail.outbox == []


def test_the_login_form_refuses_a_wrong_password(
    delegated_app: AppRegistration, fake_identity: FakeIdentityPlatform
) -> None:
    flow = start_sign_in(delegated_app, REDIRECT)
    with pytest.raises(AssertionError, match="AADSTS50126"):
        fake_identity.sign_in_form(flow["auth_uri"], ACCOUNT, "fake-wrong-password")
    assert fake_identity.token_requests() == 0
