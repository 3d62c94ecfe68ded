"""Token answers as the identity platform really writes them, in each of its forms."""

from __future__ import annotations

import datetime as dt

import pytest

from accounts.models import AppRegistration
from accounts.tokens import acquire_token
from connector.core.errors import SourceError
from tests.fakes.identity import FakeIdentityPlatform

SCOPE = "https://graph.microsoft.com/.default"


def test_numbers_written_as_strings_give_the_right_expiry(
    app_registration: AppRegistration, fake_identity: FakeIdentityPlatform
) -> None:
    fake_identity.numbers_as_strings = True
    token = acquire_token(app_registration, SCOPE)
    left = token.expires_at - dt.datetime.now(dt.UTC)
    assert dt.timedelta(minutes=55) < left <= dt.timedelta(seconds=fake_identity.expires_in)
    assert acquire_token(app_registration, SCOPE).from_cache
    assert fake_identity.token_requests() == 1


@pytest.mark.parametrize("error_codes", [True, False])
def test_the_aadsts_code_is_found_with_or_without_error_codes(
    app_registration: AppRegistration, fake_identity: FakeIdentityPlatform, error_codes: bool
) -> None:
    fake_identity.send_error_codes = error_codes
    app_registration.client_secret = "fake-secret-wrong"
    app_registration.save()
    with pytest.raises(SourceError) as caught:
        acquire_token(app_registration, SCOPE)
    assert caught.value.code == "AADSTS7000215"
    assert "Trace ID" not in caught.value.message + caught.value.hint
    assert "fake-secret-wrong" not in caught.value.message + caught.value.hint


@pytest.mark.parametrize(
    "answer",
    [
        {"error_codes": [7000215]},
        {"error_codes": ["7000215"]},
        {"error_codes": "AADSTS7000215"},
        {"error_codes": [], "error_description": "AADSTS7000215: Invalid client secret."},
        {"error_description": "Trace ID: x\r\nAADSTS7000215: Invalid client secret."},
    ],
)
def test_any_form_of_error_codes_gives_the_aadsts_number(answer: dict[str, object]) -> None:
    from accounts.tokens.errors import aadsts_code

    assert aadsts_code({"error": "invalid_client", **answer}) == 7000215
