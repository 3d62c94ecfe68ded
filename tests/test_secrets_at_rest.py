"""After an import, no password or client secret is readable: not in the SQLite file,
not in an export without --include-secrets, not in the admin's pages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client

from accounts.models import AppRegistration, ServiceAccount
from connector import xmlconfig
from connector.models import Calendar, Server
from tests.xmlconfig_helpers import DATA, read

REPO = Path(__file__).resolve().parent.parent
SECRETS = [
    b"fake-secret-http-password-7f3a",
    b"fake-secret-client-secret-9c2e",
    b"fake-secret-calendar-password-51d0",
]
# Stored in plain text on purpose: proves the scan reads where the data is.
VISIBLE = [b"visible-delegate@contoso.example", b"visible-reader@contoso.example"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A real site on SQLite in its own DATA_DIR, with secrets.xml imported by the command."""
    data_dir = tmp_path_factory.mktemp("site")
    env = {
        **os.environ,
        "DATA_DIR": str(data_dir),
        "ENV_FILE": str(data_dir / "none.env"),
        "DATABASE_URL": f"sqlite:///{data_dir / 'db.sqlite3'}",
    }
    env.pop("FIELD_ENCRYPTION_KEY", None)
    manage(env, "migrate", "-v0")
    manage(env, "import_config", str(DATA / "secrets.xml"))
    return data_dir, env


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(REPO / "manage.py"), *args],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def database_bytes(data_dir: Path) -> bytes:
    # WAL mode: recent pages may sit in the -wal file until a checkpoint.
    return b"".join(
        path.read_bytes() for path in sorted(data_dir.glob("db.sqlite3*")) if path.is_file()
    )


def test_sqlite_file_holds_no_secret_in_plain_text(site: tuple[Path, dict[str, str]]) -> None:
    data_dir, _ = site
    raw = database_bytes(data_dir)

    for visible in VISIBLE:
        assert visible in raw
    for secret in SECRETS:
        assert secret not in raw
    assert raw.count(b"fernet:") >= 3


def test_secrets_are_readable_with_the_key_of_data_dir(site: tuple[Path, dict[str, str]]) -> None:
    _, env = site

    with_secrets = manage(env, "export_config", "--include-secrets")

    for secret in SECRETS:
        assert secret.decode() in with_secrets


def test_export_without_include_secrets_has_no_secret(site: tuple[Path, dict[str, str]]) -> None:
    data_dir, env = site

    exported = manage(env, "export_config")
    manage(env, "export_config", "-o", str(data_dir / "export.xml"))

    for secret in SECRETS:
        assert secret.decode() not in exported
        assert secret not in (data_dir / "export.xml").read_bytes()
    assert "visible-delegate@contoso.example" in exported


def test_admin_pages_show_no_secret(admin_user: User) -> None:
    xmlconfig.import_configuration(read("secrets.xml"))
    client = Client()
    client.force_login(admin_user)
    pages = [
        "/admin/",
        "/admin/accounts/serviceaccount/",
        f"/admin/accounts/serviceaccount/{ServiceAccount.objects.get().pk}/change/",
        "/admin/accounts/appregistration/",
        f"/admin/accounts/appregistration/{AppRegistration.objects.get().pk}/change/",
        "/admin/connector/server/",
        *[f"/admin/connector/server/{server.pk}/change/" for server in Server.objects.all()],
        "/admin/connector/calendar/",
        *[
            f"/admin/connector/calendar/{calendar.pk}/change/"
            for calendar in Calendar.objects.all()
        ],
        "/admin/connector/calendar/export/",
    ]

    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        for secret in SECRETS:
            assert secret not in response.content, url
    # The pages do show the calendar's username: they were read.
    calendar = Calendar.objects.get(calendar_id="boardroom")
    page = client.get(f"/admin/connector/calendar/{calendar.pk}/change/").content
    assert b"visible-reader@contoso.example" in page
