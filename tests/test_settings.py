"""Settings: environment and .env read once; a bad value stops start-up naming the variable.

Each case starts a fresh interpreter, as the application does, because settings
are read when Django sets up.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

REPO = Path(__file__).resolve().parent.parent

PRINT_SETTINGS = """
import json, django
django.setup()
from django.conf import settings as s
print(json.dumps({
    "DEBUG": s.DEBUG,
    "TIME_ZONE": s.TIME_ZONE,
    "ALLOWED_HOSTS": s.ALLOWED_HOSTS,
    "SECRET_KEY": s.SECRET_KEY,
    "FIELD_ENCRYPTION_KEYS": s.FIELD_ENCRYPTION_KEYS,
    "ENGINE": s.DATABASES["default"]["ENGINE"],
    "NAME": str(s.DATABASES["default"]["NAME"]),
    "ICAL_ALLOWED_NETWORKS": s.ICAL_ALLOWED_NETWORKS,
    "ADMINS": s.ADMINS,
    "SESSION_COOKIE_SECURE": s.SESSION_COOKIE_SECURE,
    "CSRF_COOKIE_SECURE": s.CSRF_COOKIE_SECURE,
    "SECURE_SSL_REDIRECT": s.SECURE_SSL_REDIRECT,
    "SECURE_HSTS_SECONDS": s.SECURE_HSTS_SECONDS,
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": s.SECURE_HSTS_INCLUDE_SUBDOMAINS,
    "SECURE_HSTS_PRELOAD": s.SECURE_HSTS_PRELOAD,
    "SECURE_PROXY_SSL_HEADER": s.SECURE_PROXY_SSL_HEADER,
    "CSRF_TRUSTED_ORIGINS": s.CSRF_TRUSTED_ORIGINS,
    "TRUSTED_PROXIES": s.TRUSTED_PROXIES,
}))
"""

# Variables of the developer's shell that would leak into the child.
_OURS = (
    "DATA_DIR",
    "DATABASE_URL",
    "REDIS_URL",
    "SECRET_KEY",
    "FIELD_ENCRYPTION_KEY",
    "ALLOWED_HOSTS",
    "TIME_ZONE",
    "ICAL_ALLOWED_NETWORKS",
    "ADMINS",
    "DEBUG",
    "ENV_FILE",
    "HTTPS",
    "HSTS_SECONDS",
    "HSTS_INCLUDE_SUBDOMAINS",
    "HSTS_PRELOAD",
    "SECURE_PROXY_SSL_HEADER",
    "CSRF_TRUSTED_ORIGINS",
    "TRUSTED_PROXIES",
    "EMAIL_URL",
    "LOGIN_FAILURE_LIMIT",
    "LOGIN_LOCKOUT_MINUTES",
)


def start(data_dir: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key not in _OURS}
    env.update(
        DJANGO_SETTINGS_MODULE="connector.settings",
        DATA_DIR=str(data_dir),
        ENV_FILE=str(data_dir / "absent.env"),
    )
    env.update(variables)
    return subprocess.run(
        [sys.executable, "-c", PRINT_SETTINGS],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def settings_of(data_dir: Path, **variables: str) -> dict[str, object]:
    result = start(data_dir, **variables)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FIELD_ENCRYPTION_KEY", "not-a-fernet-key"),
        ("FIELD_ENCRYPTION_KEY", "ZmFrZS1zZWNyZXQta2V5LWZvci10ZXN0cy0wMDAwMDA=,short"),
        ("TIME_ZONE", "Mars/Olympus_Mons"),
        ("ICAL_ALLOWED_NETWORKS", "10.0.0.0/8,192.168.0.0/33"),
        ("DATABASE_URL", "nosuchdb://user@host/name"),
        ("DATABASE_URL", "db.sqlite3"),
        ("DEBUG", "maybe"),
        ("ADMINS", "not an address"),
        ("REDIS_URL", "localhost:6379"),
        ("HTTPS", "sometimes"),
        ("HSTS_SECONDS", "-1"),
        ("HSTS_SECONDS", "a year"),
        ("HSTS_PRELOAD", "please"),
        ("SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto"),
        ("SECURE_PROXY_SSL_HEADER", "X Forwarded Proto: https"),
        ("CSRF_TRUSTED_ORIGINS", "signage.example.com"),
        ("CSRF_TRUSTED_ORIGINS", "https://signage.example.com/admin/"),
        ("TRUSTED_PROXIES", "127.0.0.1,10.0.0.0/33"),
        ("LOGIN_FAILURE_LIMIT", "0"),
        ("LOGIN_LOCKOUT_MINUTES", "a while"),
    ],
)
def test_bad_value_stops_start_up_naming_the_variable(
    tmp_path: Path, variable: str, value: str
) -> None:
    result = start(tmp_path, **{variable: value})

    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("django.core.exceptions.ImproperlyConfigured: ")
    assert variable in last_line


def test_bad_database_url_message_does_not_repeat_its_password(tmp_path: Path) -> None:
    result = start(tmp_path, DATABASE_URL="nosuchdb://user:fake-secret-db-password@host/name")

    assert result.returncode != 0
    assert "DATABASE_URL" in result.stderr
    assert "fake-secret-db-password" not in result.stderr


def test_defaults_need_nothing_installed(tmp_path: Path) -> None:
    values = settings_of(tmp_path)

    assert values["DEBUG"] is False
    assert values["TIME_ZONE"] == "UTC"
    # Not set: localhost, loopback and this machine's own names and addresses.
    assert values["ALLOWED_HOSTS"][:3] == ["localhost", "127.0.0.1", "[::1]"]  # type: ignore[index]
    assert socket.gethostname().lower() in values["ALLOWED_HOSTS"]  # type: ignore[operator]
    assert values["ENGINE"] == "django.db.backends.sqlite3"
    assert values["NAME"] == str(tmp_path / "db.sqlite3")
    assert "192.168.0.0/16" in values["ICAL_ALLOWED_NETWORKS"]  # type: ignore[operator]
    assert "127.0.0.0/8" in values["ICAL_ALLOWED_NETWORKS"]  # type: ignore[operator]


def test_keys_are_generated_once_into_data_dir_and_reused(tmp_path: Path) -> None:
    first = settings_of(tmp_path)
    second = settings_of(tmp_path)

    assert first["SECRET_KEY"] == second["SECRET_KEY"]
    assert first["FIELD_ENCRYPTION_KEYS"] == second["FIELD_ENCRYPTION_KEYS"]
    (key,) = first["FIELD_ENCRYPTION_KEYS"]  # type: ignore[misc]
    Fernet(key.encode())  # a usable key
    for name in ("secret_key", "field_encryption_key"):
        path = tmp_path / name
        assert path.is_file()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (tmp_path / "field_encryption_key").read_text().strip() == key


def test_keys_from_the_environment_are_not_written_to_data_dir(tmp_path: Path) -> None:
    new_key, old_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()

    values = settings_of(
        tmp_path,
        FIELD_ENCRYPTION_KEY=f"{new_key}, {old_key}",
        SECRET_KEY="fake-secret-django-key-" + "x" * 40,
    )

    assert values["FIELD_ENCRYPTION_KEYS"] == [new_key, old_key]
    assert values["SECRET_KEY"] == "fake-secret-django-key-" + "x" * 40
    assert not (tmp_path / "field_encryption_key").exists()
    assert not (tmp_path / "secret_key").exists()


def test_env_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / "site.env"
    env_file.write_text(
        "TIME_ZONE=Europe/Paris\n"
        "DEBUG=true\n"
        "ALLOWED_HOSTS=signage.example.com,localhost\n"
        "ADMINS=Ops <ops@example.com>\n"
    )

    values = settings_of(tmp_path, ENV_FILE=str(env_file), DEBUG="false")

    assert values["TIME_ZONE"] == "Europe/Paris"
    assert values["ALLOWED_HOSTS"] == ["signage.example.com", "localhost"]
    assert values["ADMINS"] == [["Ops", "ops@example.com"]]
    assert values["DEBUG"] is False  # the environment beats the file


def test_spaces_around_allowed_hosts_are_ignored(tmp_path: Path) -> None:
    values = settings_of(tmp_path, ALLOWED_HOSTS="signage.example.com, localhost ,")

    assert values["ALLOWED_HOSTS"] == ["signage.example.com", "localhost"]


def test_bad_value_in_env_file_names_the_variable(tmp_path: Path) -> None:
    env_file = tmp_path / "site.env"
    env_file.write_text("TIME_ZONE=Nowhere/Special\n")

    result = start(tmp_path, ENV_FILE=str(env_file))

    assert result.returncode != 0
    assert "TIME_ZONE" in result.stderr.strip().splitlines()[-1]


def test_postgres_url_selects_postgresql(tmp_path: Path) -> None:
    values = settings_of(tmp_path, DATABASE_URL="postgres://postgres@127.0.0.1:5432/ews")

    assert values["ENGINE"] == "django.db.backends.postgresql"
    assert values["NAME"] == "ews"


def test_empty_data_dir_means_the_default_not_the_current_directory(tmp_path: Path) -> None:
    # Keys from the environment, so that nothing is written to the repository's data/.
    values = settings_of(
        tmp_path,
        DATA_DIR="",
        SECRET_KEY="fake-secret-django-key-" + "y" * 40,
        FIELD_ENCRYPTION_KEY=Fernet.generate_key().decode(),
    )

    assert values["NAME"] == str(REPO / "data" / "db.sqlite3")


def test_https_is_off_by_default_and_no_proxy_is_trusted(tmp_path: Path) -> None:
    values = settings_of(tmp_path)

    assert values["SESSION_COOKIE_SECURE"] is False
    assert values["SECURE_SSL_REDIRECT"] is False
    assert values["SECURE_HSTS_SECONDS"] == 0
    assert values["SECURE_PROXY_SSL_HEADER"] is None
    assert values["CSRF_TRUSTED_ORIGINS"] == []
    assert values["TRUSTED_PROXIES"] == []


def test_https_turns_on_secure_cookies_the_redirect_and_hsts(tmp_path: Path) -> None:
    values = settings_of(
        tmp_path,
        HTTPS="true",
        HSTS_SECONDS="31536000",
        SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto: https",
        CSRF_TRUSTED_ORIGINS="https://signage.example.com, https://signage.example.com:8443",
        TRUSTED_PROXIES="127.0.0.1, 192.0.2.0/24,::1",
    )

    assert values["SESSION_COOKIE_SECURE"] is True
    assert values["CSRF_COOKIE_SECURE"] is True
    assert values["SECURE_SSL_REDIRECT"] is True
    assert values["SECURE_HSTS_SECONDS"] == 31536000
    assert values["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert values["SECURE_HSTS_PRELOAD"] is False
    assert values["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert values["CSRF_TRUSTED_ORIGINS"] == [
        "https://signage.example.com",
        "https://signage.example.com:8443",
    ]
    assert values["TRUSTED_PROXIES"] == ["127.0.0.1/32", "192.0.2.0/24", "::1/128"]


def readme_production_env() -> str:
    """The .env of the README's "Production: HTTPS behind a reverse proxy"."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("#### Production: HTTPS behind a reverse proxy", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    assert "HTTPS=true" in block
    return block


def test_the_readme_production_env_passes_the_deployment_check(tmp_path: Path) -> None:
    env_file = tmp_path / "production.env"
    env_file.write_text(readme_production_env())
    env = {key: value for key, value in os.environ.items() if key not in _OURS}
    # DATA_DIR from the environment wins over the file's /var/lib/ews-calendar.
    env.update(DATA_DIR=str(tmp_path / "data"), ENV_FILE=str(env_file))

    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout
