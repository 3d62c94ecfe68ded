"""The admin's sign-in is rate limited (django-axes), without locking administrators out for long.

Failures are counted per username AND address: wrong passwords from one
address lock that pair only, the same administrator still signs in from
another address, a success resets the count and the lock ends by itself after
LOGIN_LOCKOUT_MINUTES.
"""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from pytest_django.fixtures import Settings

from tests.fixtures.users import TEST_PASSWORD

T0 = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
ATTACKER = "203.0.113.7"
OFFICE = "198.51.100.20"


def sign_in(username: str, password: str, address: str, **headers: str) -> int:
    """One POST to the admin's login page from a fresh browser; its status (302 = signed in)."""
    response = Client().post(
        "/admin/login/?next=/admin/",
        {"username": username, "password": password, "next": "/admin/"},
        REMOTE_ADDR=address,
        **headers,
    )
    if response.status_code == 302:
        assert response["Location"] == "/admin/"
    return response.status_code


def fail(times: int, username: str = "admin", address: str = ATTACKER, **headers: str) -> None:
    """Wrong passwords: the form again, until the one that reaches the limit locks."""
    for attempt in range(1, times + 1):
        expected = 429 if attempt >= settings.LOGIN_FAILURE_LIMIT else 200
        assert sign_in(username, "wrong-password", address, **headers) == expected, attempt


@pytest.fixture(autouse=True)
def quick_password_hashing(settings: Settings) -> None:
    """Each sign-in checks a password: the default hasher's cost, dozens of times, is slow."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def users(admin_user: User, staff_user: User) -> None:
    assert settings.LOGIN_FAILURE_LIMIT == 5 and settings.LOGIN_LOCKOUT_MINUTES == 15


def test_wrong_passwords_lock_that_user_from_that_address_only(users: None) -> None:
    with time_machine.travel(T0, tick=False):
        fail(5)

        response = Client().post(
            "/admin/login/",
            {"username": "admin", "password": TEST_PASSWORD},
            REMOTE_ADDR=ATTACKER,
        )
        assert response.status_code == 429
        assert "Try again in 15 minutes" in response.content.decode()
        assert "_auth_user_id" not in response.wsgi_request.session
        # The administrator, from another address; another user from the same one.
        assert sign_in("admin", TEST_PASSWORD, OFFICE) == 302
        assert sign_in("staff", TEST_PASSWORD, ATTACKER) == 302


def test_the_lock_ends_after_the_cool_off_even_if_the_attacker_keeps_trying(users: None) -> None:
    with time_machine.travel(T0, tick=False) as clock:
        fail(5)
        clock.shift(dt.timedelta(minutes=10))
        assert sign_in("admin", "wrong-password", ATTACKER) == 429
        assert sign_in("admin", TEST_PASSWORD, ATTACKER) == 429

        clock.shift(dt.timedelta(minutes=5, seconds=1))  # 15 min after the fifth failure

        assert sign_in("admin", TEST_PASSWORD, ATTACKER) == 302


def test_a_success_resets_the_count(users: None) -> None:
    with time_machine.travel(T0, tick=False):
        fail(4, address=OFFICE)
        assert sign_in("admin", TEST_PASSWORD, OFFICE) == 302
        fail(4, address=OFFICE)
        assert sign_in("admin", TEST_PASSWORD, OFFICE) == 302


def test_axes_reset_lifts_the_locks(users: None) -> None:
    with time_machine.travel(T0, tick=False):
        fail(5)
        assert sign_in("admin", TEST_PASSWORD, ATTACKER) == 429

        call_command("axes_reset", verbosity=0)

        assert sign_in("admin", TEST_PASSWORD, ATTACKER) == 302


def test_behind_a_trusted_proxy_the_forwarded_address_is_locked(
    users: None, settings: Settings
) -> None:
    settings.TRUSTED_PROXIES = ["127.0.0.1/32"]
    with time_machine.travel(T0, tick=False):
        fail(5, address="127.0.0.1", HTTP_X_FORWARDED_FOR=ATTACKER)

        assert sign_in("admin", TEST_PASSWORD, "127.0.0.1", HTTP_X_FORWARDED_FOR=ATTACKER) == 429
        # Everyone comes through the same proxy: the office is not locked with the attacker.
        assert sign_in("admin", TEST_PASSWORD, "127.0.0.1", HTTP_X_FORWARDED_FOR=OFFICE) == 302


def test_the_test_client_login_still_works(users: None) -> None:
    client = Client()
    assert client.login(username="admin", password=TEST_PASSWORD)
    assert not client.login(username="admin", password="wrong-password")
