"""Every token failure the identity platform gives becomes a SourceError with its fix."""

from __future__ import annotations

import pytest
from django.utils import timezone

from accounts.models import AppRegistration
from accounts.tokens import acquire_token
from connector.core.errors import SourceError
from connector.core.trace import Trace
from tests.fakes.identity import FakeIdentityPlatform
from tests.fixtures.identity import GRAPH_CLIENT_ID, GRAPH_SECRET, TENANT

SCOPE = "https://graph.microsoft.com/.default"


def fail(app: AppRegistration) -> tuple[SourceError, Trace]:
    trace = Trace()
    with pytest.raises(SourceError) as excinfo:
        acquire_token(app, SCOPE, trace=trace)
    error = excinfo.value
    assert error.step == "token"
    for text in (error.message, error.hint, repr(trace)):
        assert GRAPH_SECRET not in text
        assert app.client_secret not in text
    return error, trace


def test_wrong_secret_says_to_enter_the_secret_value(
    app_registration: AppRegistration, fake_identity: FakeIdentityPlatform
) -> None:
    app_registration.client_secret = "fake-secret-0f3c9a7e-secret-id-not-value"
    app_registration.save()

    error, trace = fail(app_registration)

    assert error.code == "AADSTS7000215"
    assert "VALUE" in error.hint and "secret ID" in error.hint
    assert error.retryable is False
    assert trace.steps[0].ok is False
    assert trace.steps[0].hint == error.hint
    assert fake_identity.token_requests() == 1


def test_expired_secret_is_reported_and_marks_the_credential(
    app_registration: AppRegistration, fake_identity: FakeIdentityPlatform
) -> None:
    fake_identity.expire_secret(GRAPH_CLIENT_ID)

    error, _ = fail(app_registration)

    assert error.code == "AADSTS7000222"
    assert "expired" in error.message
    assert "Certificates & secrets" in error.hint
    assert "New client secret" in error.hint
    stored = AppRegistration.objects.get(pk=app_registration.pk)
    assert stored.secret_expired_at is not None
    assert abs((timezone.now() - stored.secret_expired_at).total_seconds()) < 60
    assert stored.expiry_status() == "expired"


def test_a_working_secret_clears_the_expired_mark(
    app_registration: AppRegistration, fake_identity: FakeIdentityPlatform
) -> None:
    AppRegistration.objects.filter(pk=app_registration.pk).update(secret_expired_at=timezone.now())
    app = AppRegistration.objects.get(pk=app_registration.pk)
    acquire_token(app, SCOPE)
    assert AppRegistration.objects.get(pk=app.pk).secret_expired_at is None


def test_unknown_client_id_in_tenant(
    app_registration: AppRegistration, fake_identity: FakeIdentityPlatform
) -> None:
    app_registration.client_id = "99999999-8888-7777-6666-555555555555"
    app_registration.save()

    error, _ = fail(app_registration)

    assert error.code == "AADSTS700016"
    assert "99999999-8888-7777-6666-555555555555" in error.message
    assert "admin consent" in error.hint


def test_unknown_tenant_from_openid_configuration(
    app_registration: AppRegistration, fake_identity: FakeIdentityPlatform
) -> None:
    app_registration.tenant = "fabrikam.onmicrosoft.com"
    app_registration.save()

    error, _ = fail(app_registration)

    assert error.code == "AADSTS90002"
    assert "fabrikam.onmicrosoft.com" in error.message
    assert "tenant" in error.hint
    # msal stops at the openid-configuration: no token request was sent.
    assert fake_identity.token_requests() == 0
    assert fake_identity.count(lambda r: r.path.endswith("openid-configuration")) == 1


def test_identity_platform_unreachable(
    app_registration: AppRegistration, fake_identity: FakeIdentityPlatform
) -> None:
    fake_identity.stop()

    error, _ = fail(app_registration)

    assert error.code == "connection"
    assert error.retryable is True
    assert "127.0.0.1" in error.message


def test_identity_platform_server_error_is_retryable(
    app_registration: AppRegistration, fake_identity: FakeIdentityPlatform
) -> None:
    acquire_token(app_registration, SCOPE)  # builds the msal application
    fake_identity.faults.fail_next(3, status=503)

    trace = Trace()
    with pytest.raises(SourceError) as excinfo:
        acquire_token(app_registration, "https://outlook.office365.com/.default", trace=trace)
    error = excinfo.value
    assert error.step == "token"
    assert error.retryable is True
    assert "Try again" in error.hint


def test_tenant_given_by_guid_works(
    app_registration: AppRegistration, fake_identity: FakeIdentityPlatform
) -> None:
    tenant = fake_identity.find_tenant(TENANT)
    assert tenant is not None
    app_registration.tenant = tenant.tenant_id
    app_registration.save()
    token = acquire_token(app_registration, SCOPE)
    assert fake_identity.is_valid_token(token.token)
