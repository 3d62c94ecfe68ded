"""Rotating FIELD_ENCRYPTION_KEY, and a key that cannot read the secrets, never brick a site.

``manage.py rotate_keys`` re-encrypts everything with the first key; a secret that
no key decrypts is a reported condition (checks warn, pages render, /healthz says
503 and names it, the credential's page takes it again), never a crash.
"""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client

from accounts.models import AppRegistration, ServiceAccount
from tests.helpers_process import clean_env, manage

OLD = Fernet.generate_key().decode()
NEW = Fernet.generate_key().decode()
PASSWORD = "fake-secret-delegate-password"
CLIENT_SECRET = "fake-secret-client-secret-rot"

PAGES = [
    "/admin/",
    "/admin/accounts/serviceaccount/",
    "/admin/accounts/appregistration/",
    "/admin/connector/server/",
    "/admin/connector/calendar/",
    "/status/",
]


def stored(model: type, pk: int, column: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {model._meta.db_table} WHERE id = %s", [pk])
        return str(cursor.fetchone()[0])


def readable_with(key: str, ciphertext: str) -> bool:
    try:
        Fernet(key.encode()).decrypt(ciphertext.removeprefix("fernet:").encode())
    except Exception:
        return False
    return True


@pytest.fixture
def secrets_under_old_key(settings, db):  # type: ignore[no-untyped-def]
    settings.FIELD_ENCRYPTION_KEYS = [OLD]
    account = ServiceAccount.objects.create(
        name="delegate", username="d@x.example", password=PASSWORD
    )
    app = AppRegistration.objects.create(
        name="signage", tenant="contoso.example", client_id="c1", client_secret=CLIENT_SECRET
    )
    return account, app


def test_rotate_keys_reencrypts_everything_with_the_first_key(
    settings, secrets_under_old_key
) -> None:  # type: ignore[no-untyped-def]
    account, app = secrets_under_old_key
    settings.FIELD_ENCRYPTION_KEYS = [NEW, OLD]
    call_command("rotate_keys")
    assert readable_with(NEW, stored(ServiceAccount, account.pk, "password"))
    assert readable_with(NEW, stored(AppRegistration, app.pk, "client_secret"))
    assert not readable_with(OLD, stored(ServiceAccount, account.pk, "password"))
    settings.FIELD_ENCRYPTION_KEYS = [NEW]  # the old key can go now
    assert ServiceAccount.objects.get(pk=account.pk).password == PASSWORD
    assert AppRegistration.objects.get(pk=app.pk).client_secret == CLIENT_SECRET


def test_a_wrong_key_is_reported_and_nothing_is_lost(
    settings, secrets_under_old_key, admin_user: User
) -> None:  # type: ignore[no-untyped-def]
    account, app = secrets_under_old_key
    before = stored(ServiceAccount, account.pk, "password")
    settings.FIELD_ENCRYPTION_KEYS = [NEW]  # the old key was dropped too early

    with pytest.raises(CommandError, match="2 secret"):
        call_command("rotate_keys")
    assert stored(ServiceAccount, account.pk, "password") == before  # untouched

    client = Client()
    client.force_login(admin_user)
    for page in PAGES:
        assert client.get(page).status_code == 200, page
    change = client.get(f"/admin/accounts/serviceaccount/{account.pk}/change/")
    assert change.status_code == 200
    assert b"cannot be decrypted" in change.content
    # Saved without a new password: the stored one stays as it was, for the right key.
    client.post(
        f"/admin/accounts/serviceaccount/{account.pk}/change/",
        {"name": "delegate", "username": "d@x.example", "password": ""},
    )
    assert stored(ServiceAccount, account.pk, "password") == before

    health = client.get("/healthz")
    assert health.status_code == 503
    body = health.json()
    assert body["undecryptable_secrets"] == 2
    assert any("password of service account delegate" in p for p in body["problems"])
    assert PASSWORD not in health.content.decode()

    settings.FIELD_ENCRYPTION_KEYS = [NEW, OLD]  # the right key is back: all is well again
    assert ServiceAccount.objects.get(pk=account.pk).password == PASSWORD


def test_an_administrator_enters_an_unreadable_secret_again(
    settings, secrets_under_old_key, admin_user: User
) -> None:  # type: ignore[no-untyped-def]
    account, _ = secrets_under_old_key
    settings.FIELD_ENCRYPTION_KEYS = [NEW]
    client = Client()
    client.force_login(admin_user)
    answer = client.post(
        f"/admin/accounts/serviceaccount/{account.pk}/change/",
        {"name": "delegate", "username": "d@x.example", "password": "fake-secret-typed-again"},
    )
    assert answer.status_code == 302
    assert ServiceAccount.objects.get(pk=account.pk).password == "fake-secret-typed-again"
    assert readable_with(NEW, stored(ServiceAccount, account.pk, "password"))


def test_commands_run_and_check_warns_with_a_key_that_reads_nothing(  # type: ignore[no-untyped-def]
    tmp_path,
) -> None:
    env = clean_env(tmp_path, FIELD_ENCRYPTION_KEY=OLD)
    assert manage(env, "migrate", "--noinput").returncode == 0
    setup = (
        "from accounts.models import ServiceAccount\n"
        "ServiceAccount.objects.create(\n"
        f"    name='delegate', username='d@x.example', password='{PASSWORD}'\n"
        ")\n"
    )
    assert manage(env, "shell", "-c", setup).returncode == 0
    env["FIELD_ENCRYPTION_KEY"] = NEW
    checked = manage(env, "check")
    assert checked.returncode == 0, checked.stderr
    assert "Traceback" not in checked.stderr
    assert "connector.W003" in checked.stderr
    assert "password of service account delegate" in checked.stderr
    assert "rotate_keys" in checked.stderr
    rotated = manage(env, "rotate_keys")
    assert rotated.returncode == 1 and "Traceback" not in rotated.stderr
    assert "Could not decrypt the password of service account delegate" in rotated.stderr
    env["FIELD_ENCRYPTION_KEY"] = f"{NEW},{OLD}"
    rotated = manage(env, "rotate_keys")
    assert rotated.returncode == 0, rotated.stderr
    env["FIELD_ENCRYPTION_KEY"] = NEW
    checked = manage(env, "check")
    assert checked.returncode == 0 and "W003" not in checked.stderr
    assert PASSWORD not in checked.stdout + checked.stderr
