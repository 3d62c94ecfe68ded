"""Access tokens from the (fake) identity platform through unmodified msal.

One token request per app registration and scope per token lifetime, whatever
the number of refreshes and processes; the cache is shared through the database.
"""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.db import connection
from prometheus_client import REGISTRY

from accounts.models import AppRegistration, TokenCache
from accounts.tokens import acquire_token, clear_clients
from connector.core.trace import Trace
from tests.fakes.identity import FakeIdentityPlatform
from tests.fixtures.identity import GRAPH_SECRET

SCOPE = "https://graph.microsoft.com/.default"


def token_metric(app: AppRegistration) -> float:
    value = REGISTRY.get_sample_value(
        "ews_calendar_token_requests_total", {"app_registration": app.name}
    )
    return value or 0.0


def test_first_token_is_requested_then_served_from_cache(
    app_registration: AppRegistration, fake_identity: FakeIdentityPlatform
) -> None:
    first = acquire_token(app_registration, SCOPE)
    assert first.from_cache is False
    assert fake_identity.is_valid_token(first.token, audience="https://graph.microsoft.com")
    assert fake_identity.token_requests("client_credentials") == 1

    for _ in range(20):
        again = acquire_token(app_registration, SCOPE)
        assert again.token == first.token
        assert again.from_cache is True
    assert fake_identity.token_requests() == 1


def test_token_expiry_is_reported_from_expires_in(
    app_registration: AppRegistration, fake_identity: FakeIdentityPlatform
) -> None:
    with time_machine.travel(dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC), tick=False):
        token = acquire_token(app_registration, SCOPE)
    assert token.expires_at == dt.datetime(2026, 3, 2, 8, 59, 59, tzinfo=dt.UTC)


def test_another_process_reuses_the_token_through_the_database(
    app_registration: AppRegistration, fake_identity: FakeIdentityPlatform
) -> None:
    first = acquire_token(app_registration, SCOPE)
    assert TokenCache.objects.filter(app_registration=app_registration).exists()

    clear_clients()  # as a worker process that never saw this token
    app = AppRegistration.objects.get(pk=app_registration.pk)
    second = acquire_token(app, SCOPE)

    assert second.token == first.token
    assert second.from_cache is True
    assert fake_identity.token_requests() == 1


def test_token_cache_is_stored_encrypted(
    app_registration: AppRegistration, fake_identity: FakeIdentityPlatform
) -> None:
    token = acquire_token(app_registration, SCOPE)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT data FROM accounts_tokencache WHERE app_registration_id = %s",
            [app_registration.pk],
        )
        (raw,) = cursor.fetchone()
    assert raw.startswith("fernet:")
    assert token.token not in raw
    assert token.token in TokenCache.objects.get(app_registration=app_registration).data


def test_one_token_request_per_lifetime_across_many_refreshes(
    app_registration: AppRegistration, fake_identity: FakeIdentityPlatform
) -> None:
    start = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
    tokens = set()
    with time_machine.travel(start, tick=False) as traveller:
        # A refresh every minute for 54 minutes: the token (3599 s) is still more
        # than 5 minutes from expiry, so every refresh reuses it.
        for minute in range(55):
            if minute % 3 == 0:
                clear_clients()  # now and then a "new process" joins in
            app = AppRegistration.objects.get(pk=app_registration.pk)
            tokens.add(acquire_token(app, SCOPE).token)
            traveller.shift(dt.timedelta(minutes=1))
        assert fake_identity.token_requests() == 1
        assert len(tokens) == 1

        # 55 minutes in: less than 5 minutes left, msal renews it, exactly once.
        renewed = acquire_token(app_registration, SCOPE)
        assert renewed.from_cache is False
        assert renewed.token not in tokens
        clear_clients()
        assert acquire_token(app_registration, SCOPE).token == renewed.token
        assert fake_identity.token_requests() == 2


def test_past_expiry_exactly_one_new_request(
    app_registration: AppRegistration, fake_identity: FakeIdentityPlatform
) -> None:
    start = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False) as traveller:
        acquire_token(app_registration, SCOPE)
        traveller.shift(dt.timedelta(hours=2))
        for _ in range(5):
            acquire_token(app_registration, SCOPE)
    assert fake_identity.token_requests() == 2


def test_each_scope_has_its_own_token(
    app_registration: AppRegistration, fake_identity: FakeIdentityPlatform
) -> None:
    graph = acquire_token(app_registration, SCOPE)
    ews = acquire_token(app_registration, "https://outlook.office365.com/.default")
    assert graph.token != ews.token
    assert fake_identity.is_valid_token(ews.token, audience="https://outlook.office365.com")
    assert not fake_identity.is_valid_token(ews.token, audience="https://graph.microsoft.com")
    clear_clients()
    acquire_token(app_registration, SCOPE)
    acquire_token(app_registration, "https://outlook.office365.com/.default")
    assert fake_identity.token_requests() == 2


def test_token_metric_counts_only_requests_sent(
    app_registration: AppRegistration, fake_identity: FakeIdentityPlatform
) -> None:
    before = token_metric(app_registration)
    for _ in range(3):
        acquire_token(app_registration, SCOPE)
    clear_clients()
    acquire_token(app_registration, SCOPE)
    assert token_metric(app_registration) - before == 1


def test_changed_secret_takes_effect_at_once(
    app_registration: AppRegistration, fake_identity: FakeIdentityPlatform
) -> None:
    acquire_token(app_registration, SCOPE)
    app_registration.client_secret = "fake-secret-wrong"
    app_registration.save()
    # The cached token still serves (it was issued to the app, not to the secret) ...
    assert acquire_token(app_registration, SCOPE).from_cache is True
    # ... but a new token request uses the new secret.
    TokenCache.objects.all().delete()
    clear_clients()
    app = AppRegistration.objects.get(pk=app_registration.pk)
    with pytest.raises(Exception) as excinfo:
        acquire_token(app, SCOPE)
    assert getattr(excinfo.value, "code", "") == "AADSTS7000215"


def test_trace_notes_new_then_cached_without_the_token(
    app_registration: AppRegistration, fake_identity: FakeIdentityPlatform
) -> None:
    trace = Trace()
    token = acquire_token(app_registration, SCOPE, trace=trace)
    acquire_token(app_registration, SCOPE, trace=trace)
    assert [step.name for step in trace.steps] == ["token", "token"]
    assert trace.steps[0].details[0].startswith("new token, valid until")
    assert trace.steps[1].details[0].startswith("cached token, valid until")
    text = repr(trace)
    assert token.token not in text
    assert GRAPH_SECRET not in text
    assert token.token not in repr(token)


def test_discarded_token_is_replaced_in_every_process(
    app_registration: AppRegistration, fake_identity: FakeIdentityPlatform
) -> None:
    from accounts.tokens import discard_token

    refused = acquire_token(app_registration, SCOPE)
    discard_token(app_registration, refused.token)

    clear_clients()  # another process must not pick the refused token from the database
    fresh = acquire_token(app_registration, SCOPE)
    assert fresh.token != refused.token
    assert fresh.from_cache is False
    assert acquire_token(app_registration, SCOPE).token == fresh.token
    assert fake_identity.token_requests() == 2
