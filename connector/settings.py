"""Settings of ews-calendar.

Every environment variable is read here, once, with its default beside it
(README: "Settings"). A bad value stops start-up with ImproperlyConfigured
naming the variable.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import secrets
import ssl
from collections.abc import Callable
from email.utils import parseaddr
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import environ
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
_env_file = Path(os.environ.get("ENV_FILE", BASE_DIR / ".env"))
if _env_file.is_file():
    environ.Env.read_env(_env_file)


def _read(name: str, cast: type, default: object) -> object:
    """Read one variable through django-environ; a bad value names the variable."""
    try:
        return env(name, cast=cast, default=default)  # type: ignore[call-overload]
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(f"{name}: {exc}") from exc


def _strict_bool(name: str, default: bool) -> bool:
    """django-environ reads any unknown word as False; a typo must not pass silently."""
    raw = str(_read(name, str, "")).strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on", "y", "t"):
        return True
    if raw in ("0", "false", "no", "off", "n", "f"):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


def _positive_int(name: str, default: int) -> int:
    value = _read(name, int, default)
    assert isinstance(value, int)
    if value <= 0:
        raise ImproperlyConfigured(f"{name} must be a positive integer, not {value}")
    return value


def _non_negative_int(name: str, default: int) -> int:
    value = _read(name, int, default)
    assert isinstance(value, int)
    if value < 0:
        raise ImproperlyConfigured(f"{name} must be 0 or a positive integer, not {value}")
    return value


def _kept_in_data_dir(filename: str, make: Callable[[], str]) -> str:
    """A value generated on first run and kept in DATA_DIR (mode 0600)."""
    path = DATA_DIR / filename
    if path.is_file():
        return path.read_text().strip()
    value = make()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def _create_private_file(path: Path) -> None:
    """An empty file, mode 0600, unless it exists: SQLite gives its WAL and shared-memory
    files the mode of the database, and an empty file is an empty database."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError:
        pass  # a missing directory: Django's own error at the first query says more


def parse_fernet_keys(raw: str, name: str = "FIELD_ENCRYPTION_KEY") -> list[str]:
    keys = [key.strip() for key in raw.split(",") if key.strip()]
    if not keys:
        raise ImproperlyConfigured(f"{name} is empty")
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key.encode())
        except (ValueError, TypeError) as exc:
            raise ImproperlyConfigured(
                f"{name}: key {position} is not a Fernet key (44 URL-safe base64 "
                "characters, as Fernet.generate_key() makes)"
            ) from exc
    return keys


def parse_networks(raw: list[str], name: str = "ICAL_ALLOWED_NETWORKS") -> list[str]:
    networks = []
    for item in raw:
        try:
            networks.append(str(ipaddress.ip_network(item.strip(), strict=False)))
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}: {item!r} is not a network ({exc})") from exc
    return networks


def parse_proxy_ssl_header(
    raw: str, name: str = "SECURE_PROXY_SSL_HEADER"
) -> tuple[str, str] | None:
    """``X-Forwarded-Proto: https`` (the header as the proxy sends it) → Django's META pair."""
    if not raw.strip():
        return None
    header, separator, value = raw.partition(":")
    header, value = header.strip(), value.strip()
    if not separator or not value or not re.fullmatch(r"[A-Za-z0-9-]+", header):
        raise ImproperlyConfigured(
            f"{name}: expected the header and the value that means HTTPS, such as "
            f"'X-Forwarded-Proto: https', not {raw!r}"
        )
    return "HTTP_" + header.upper().replace("-", "_"), value


def parse_origins(raw: list[str], name: str = "CSRF_TRUSTED_ORIGINS") -> list[str]:
    """Origins as browsers send them: scheme and host (and port), nothing after."""
    origins = []
    for item in (str(item).strip() for item in raw):
        if not item:
            continue
        parts = urlsplit(item)
        if parts.scheme not in ("http", "https") or not parts.netloc or item.count("/") != 2:
            raise ImproperlyConfigured(
                f"{name}: {item!r} is not an origin such as https://signage.example.com"
            )
        origins.append(item)
    return origins


def parse_admins(raw: list[str], name: str = "ADMINS") -> list[tuple[str, str]]:
    admins = []
    for item in raw:
        display, address = parseaddr(item.strip())
        if "@" not in address:
            raise ImproperlyConfigured(f"{name}: {item!r} is not an e-mail address")
        admins.append((display or address, address))
    return admins


# --- where things live --------------------------------------------------------

# An empty DATA_DIR (an unset shell variable) means the default, not the current directory.
DATA_DIR = Path(str(_read("DATA_DIR", str, "") or BASE_DIR / "data")).resolve()
try:
    # 0700: the database and the keys in it are the service user's alone. An existing
    # directory keeps its mode (an administrator may have chosen a group for backups).
    DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
except OSError as exc:
    raise ImproperlyConfigured(f"DATA_DIR: cannot create {DATA_DIR}: {exc}") from exc

DEBUG = _strict_bool("DEBUG", False)

SECRET_KEY = str(
    _read("SECRET_KEY", str, "")
    or _kept_in_data_dir("secret_key", lambda: secrets.token_urlsafe(50))
)

FIELD_ENCRYPTION_KEYS = parse_fernet_keys(
    str(
        _read("FIELD_ENCRYPTION_KEY", str, "")
        or _kept_in_data_dir("field_encryption_key", lambda: Fernet.generate_key().decode())
    )
)


def machine_host_names() -> list[str]:
    """The names and addresses players may use for this machine, found at start.

    localhost and loopback, the host's own names, and the addresses of its network
    interfaces: signage players reach the server by its name or LAN address.
    """
    import socket

    import psutil

    names = ["localhost", "127.0.0.1", "[::1]"]
    hostname = socket.gethostname()
    names += [hostname, socket.getfqdn()]
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET:
                names.append(address.address)
            elif address.family == socket.AF_INET6:
                # As Host headers write them: [fd00::2]; fe80::1%eth0 without its zone.
                names.append(f"[{address.address.split('%', 1)[0]}]")
    seen: list[str] = []
    for name in names:
        if name and name.lower() not in seen:
            seen.append(name.lower())
    return seen


# "a.example, b.example": spaces after the commas are not part of the names.
_hosts = list(_read("ALLOWED_HOSTS", list, []))  # type: ignore[call-overload]
ALLOWED_HOSTS = [str(host).strip() for host in _hosts if str(host).strip()]
# True when ALLOWED_HOSTS was found on this machine rather than set.
ALLOWED_HOSTS_FOUND = not ALLOWED_HOSTS
if ALLOWED_HOSTS_FOUND:
    ALLOWED_HOSTS = machine_host_names()

# Names that all mean UTC: a host in one of them gives no local time to follow.
_UTC_NAMES = frozenset(
    {
        "UTC",
        "Etc/UTC",
        "Etc/Universal",
        "Universal",
        "Zulu",
        "Etc/Zulu",
        "GMT",
        "Etc/GMT",
        "Etc/GMT+0",
        "Etc/GMT-0",
        "Etc/GMT0",
        "GMT0",
        "UCT",
    }
)


def host_time_zone() -> tuple[str, str]:
    """The host's zone (the TZ variable, then the system's) and where it was found.

    The PHP connector ran in its server's time zone: a site moving over expects
    "today" and day-start alarms in the same local time, without a setting.
    """
    from tzlocal import get_localzone_name

    try:
        name = get_localzone_name()
    except Exception:  # tzlocal raises its own errors on an odd system configuration
        name = None
    source = "TZ" if os.environ.get("TZ") else "the system's zone"
    if not name:
        return "UTC", "none found"
    return ("UTC" if name in _UTC_NAMES else name), source


_time_zone = str(_read("TIME_ZONE", str, "")).strip()
if _time_zone:
    TIME_ZONE, TIME_ZONE_SOURCE = _time_zone, "TIME_ZONE"
else:
    TIME_ZONE, TIME_ZONE_SOURCE = host_time_zone()
# True when calendars follow UTC only because nothing named a local zone.
TIME_ZONE_UTC_BY_DEFAULT = TIME_ZONE_SOURCE != "TIME_ZONE" and TIME_ZONE in _UTC_NAMES
try:
    ZoneInfo(TIME_ZONE)
except (ZoneInfoNotFoundError, ValueError) as exc:
    raise ImproperlyConfigured(
        f"{'TIME_ZONE' if TIME_ZONE_SOURCE == 'TIME_ZONE' else 'TIME_ZONE (from the host)'}: "
        f"unknown time zone {TIME_ZONE!r}"
    ) from exc
USE_TZ = True

ICAL_ALLOWED_NETWORKS = parse_networks(
    list(
        _read(  # type: ignore[call-overload]
            "ICAL_ALLOWED_NETWORKS",
            list,
            ["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"],
        )
    )
)

ADMINS = parse_admins(list(_read("ADMINS", list, [])))  # type: ignore[call-overload]
MANAGERS = ADMINS

# --- HTTPS behind a reverse proxy (README: "Production: HTTPS behind a reverse proxy") ---

# One switch for a site served over HTTPS only: secure cookies, redirect to HTTPS, HSTS.
HTTPS = _strict_bool("HTTPS", False)
# Start small: a browser that saw HSTS refuses plain HTTP for this long, even if HTTPS breaks.
HSTS_SECONDS = _non_negative_int("HSTS_SECONDS", 3600)
# Host names under this site's own name (rarely any); not the rest of the domain.
HSTS_INCLUDE_SUBDOMAINS = _strict_bool("HSTS_INCLUDE_SUBDOMAINS", True)
HSTS_PRELOAD = _strict_bool("HSTS_PRELOAD", False)
# The header and value by which the proxy says that the request came over HTTPS.
SECURE_PROXY_SSL_HEADER = parse_proxy_ssl_header(str(_read("SECURE_PROXY_SSL_HEADER", str, "")))
# Other origins of the admin's forms, when the proxy does not pass on the Host header.
CSRF_TRUSTED_ORIGINS = parse_origins(
    list(_read("CSRF_TRUSTED_ORIGINS", list, []))  # type: ignore[call-overload]
)
# Proxies whose X-Forwarded-For is believed for the feed's network check (connector/access.py).
TRUSTED_PROXIES = parse_networks(
    list(_read("TRUSTED_PROXIES", list, [])),  # type: ignore[call-overload]
    name="TRUSTED_PROXIES",
)

# --- database and queue -------------------------------------------------------

_database_scheme, _separator, _ = str(_read("DATABASE_URL", str, "sqlite://")).partition("://")
if not _separator or _database_scheme not in environ.Env.DB_SCHEMES:
    raise ImproperlyConfigured(
        "DATABASE_URL: expected a database URL with a known scheme, for example "
        "sqlite:////path/db.sqlite3 or postgres://user:password@host/name"
    )
try:
    DATABASES = {
        "default": env.db_url("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'db.sqlite3'}")
    }
except (ValueError, KeyError, ImproperlyConfigured) as exc:
    raise ImproperlyConfigured(f"DATABASE_URL: {exc}") from exc
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web and worker share the file: wait for locks rather than fail, use WAL.
    # IMMEDIATE: a transaction that reads then writes takes the write lock when it
    # begins, so another process's commit in between cannot fail it at once.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # One connection per process, kept: opening one (and its PRAGMAs) on every
    # request cost a feed more than reading the snapshot (docs/PERFORMANCE.md).
    DATABASES["default"].setdefault("CONN_MAX_AGE", 600)
    # Tests run on a file as production does (not Django's shared in-memory database,
    # whose table locks fail at once where the file's writers wait their turn): rooms
    # read at once write their state from several threads (pytest-xdist adds _gw<N>).
    DATABASES["default"].setdefault("TEST", {"NAME": str(DATA_DIR / "test.sqlite3")})
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
    _database_file = str(DATABASES["default"]["NAME"])
    if _database_file and _database_file != ":memory:" and not _database_file.startswith("file:"):
        # Created here, before SQLite would create it with the process's umask (0644).
        _create_private_file(Path(_database_file))
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", 60)
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = str(_read("REDIS_URL", str, ""))
if REDIS_URL and REDIS_URL.partition("://")[0] not in ("redis", "rediss", "unix"):
    # Otherwise the worker fails only when it starts, far from the setting.
    raise ImproperlyConfigured(
        "REDIS_URL: expected a Redis URL such as redis://localhost:6379/0 (or rediss://, unix://)"
    )

# Tuning (README: "Tuning"); the defaults suit a few dozen rooms.
REFRESH_TIMEOUT = _positive_int("REFRESH_TIMEOUT", 60)  # seconds a background refresh may take
FEED_REFRESH_TIMEOUT = _positive_int("FEED_REFRESH_TIMEOUT", 10)  # seconds a feed request waits
# megabytes of encoded feeds each web process keeps in memory (connector/services/feeds.py)
FEED_CACHE_MB = _positive_int("FEED_CACHE_MB", 64)
EXCHANGE_REQUEST_TIMEOUT = _positive_int("EXCHANGE_REQUEST_TIMEOUT", 20)  # one HTTP call
# seconds the test console (and manage.py test_calendar) takes at most to answer
CONSOLE_BUDGET_SECONDS = _positive_int("CONSOLE_BUDGET_SECONDS", 15)


def parse_ca_bundle(raw: str, name: str = "EXCHANGE_CA_BUNDLE") -> str:
    """The PEM file of a private CA ("" for none): it must exist and hold a certificate."""
    path = raw.strip()
    if not path:
        return ""
    if not Path(path).is_file():
        raise ImproperlyConfigured(
            f"{name}: {path} is not a file (a PEM bundle of CA certificates)"
        )
    try:
        ssl.create_default_context(cafile=path)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ImproperlyConfigured(f"{name}: {path} holds no PEM certificate ({exc})") from exc
    return path


# The private certificate authority of an on-premises Exchange, trusted beside the public
# CAs for every Exchange, Graph and identity request (connector/core/tls.py). The process
# environment's REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE do not count.
EXCHANGE_CA_BUNDLE = parse_ca_bundle(str(_read("EXCHANGE_CA_BUNDLE", str, "")))
GRAPH_MAX_CONCURRENCY = _positive_int("GRAPH_MAX_CONCURRENCY", 4)  # per app registration
EWS_MAX_CONCURRENCY = _positive_int("EWS_MAX_CONCURRENCY", 8)  # per account
# gssnegotiate (Kerberos): the realm and its domain controllers when DNS does not tell them.
KERBEROS_REALM = str(_read("KERBEROS_REALM", str, "")).strip().upper()
KERBEROS_KDC = [
    kdc.strip()
    for kdc in _read("KERBEROS_KDC", list, [])  # type: ignore[attr-defined]
    if kdc.strip()
]
if KERBEROS_KDC and not KERBEROS_REALM:
    raise ImproperlyConfigured("KERBEROS_KDC needs KERBEROS_REALM (the realm those KDCs serve)")
Q_WORKERS = _positive_int("Q_WORKERS", 4)
SECRET_EXPIRY_WARNING_DAYS = _positive_int("SECRET_EXPIRY_WARNING_DAYS", 30)
# The admin's sign-in (django-axes): failures of one username from one address, then
# that pair waits this long. Short, so that nobody locks an administrator out for long.
LOGIN_FAILURE_LIMIT = _positive_int("LOGIN_FAILURE_LIMIT", 5)
LOGIN_LOCKOUT_MINUTES = _positive_int("LOGIN_LOCKOUT_MINUTES", 15)
CONFIG_MAX_BYTES = _positive_int("CONFIG_MAX_BYTES", 1024 * 1024)
# Revisions kept of the configuration each import replaced (manage.py restore_config).
CONFIG_REVISIONS_KEPT = _positive_int("CONFIG_REVISIONS_KEPT", 50)

Q_CLUSTER: dict[str, object] = {
    "name": "ews-calendar",
    "workers": Q_WORKERS,
    "timeout": REFRESH_TIMEOUT + 30,
    "retry": REFRESH_TIMEOUT + 90,
    "max_attempts": 1,
    "catch_up": False,
    "ack_failures": True,
    "save_limit": 250,
    "label": "Background tasks",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"
    Q_CLUSTER["poll"] = 1

# --- e-mail (secret-expiry and re-authentication mail to ADMINS) --------------

try:
    vars().update(env.email_url("EMAIL_URL", default="smtp://localhost:25"))
except (ValueError, KeyError) as exc:
    raise ImproperlyConfigured(f"EMAIL_URL: {exc}") from exc
SERVER_EMAIL = DEFAULT_FROM_EMAIL = str(_read("DEFAULT_FROM_EMAIL", str, "ews-calendar@localhost"))

# --- Django --------------------------------------------------------------------

INSTALLED_APPS = [
    "accounts",
    "connector",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_q",
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Feeds are answered here, without the session, user, messages, CSRF and axes below.
    "connector.feed_middleware.FeedFastPathMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a refused sign-in into the lock-out page.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "connector.login_lockout.LoginLockoutBackend",  # first: refuses a locked-out pair
    "django.contrib.auth.backends.ModelBackend",
]

# --- the admin's sign-in lock-out (django-axes; connector/login_lockout.py) -----------
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = dt.timedelta(minutes=LOGIN_LOCKOUT_MINUTES)
# The pair, never the username alone: failures from elsewhere cannot lock an
# administrator out of the address they sign in from.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# Failures while locked out do not restart the cool-off: a lock lasts at most its length.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# The same address as the feed's network check: the client behind TRUSTED_PROXIES.
AXES_CLIENT_IP_CALLABLE = "connector.access.client_address"
AXES_LOCKOUT_TEMPLATE = "connector/login_locked.html"
# No start-up line from axes in the output of every manage.py command.
AXES_VERBOSE = False

ROOT_URLCONF = "connector.urls"
WSGI_APPLICATION = "connector.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "connector.context_processors.secret_expiry",
                "connector.context_processors.reauth_needed",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
USE_I18N = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
# whitenoise serves collected files from here; it must exist even before collectstatic.
STATIC_ROOT.mkdir(mode=0o700, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
# Django chmods what its storages write to 0644 by default: keep DATA_DIR private.
FILE_UPLOAD_PERMISSIONS = 0o600
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o700

LOGIN_URL = "admin:login"
DEFAULT_EXCEPTION_REPORTER = "connector.error_reports.SecretSafeExceptionReporter"
DEFAULT_EXCEPTION_REPORTER_FILTER = "connector.error_reports.SecretSafeReporterFilter"
DATA_UPLOAD_MAX_MEMORY_SIZE = CONFIG_MAX_BYTES + 64 * 1024
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS
# A load balancer checks the instance itself, over plain HTTP, and must not get a 301.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = HSTS_SECONDS if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HSTS_INCLUDE_SUBDOMAINS
SECURE_HSTS_PRELOAD = HSTS_PRELOAD
# Preloading is asked for the registered domain, on its own name, not by an application
# on a host name under it: off is the usual choice here, and not worth a warning.
SILENCED_SYSTEM_CHECKS = [] if HSTS_PRELOAD else ["security.W021"]


def _not_bad_gateway(record: object) -> bool:
    """A feed's 502 is its answer while Exchange is down (and logged as such), not a crash."""
    return getattr(record, "status_code", None) != 502


LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {
        "require_debug_false": {"()": "django.utils.log.RequireDebugFalse"},
        "not_bad_gateway": {"()": "django.utils.log.CallbackFilter", "callback": _not_bad_gateway},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        # Django's mail to ADMINS on errors, without a mail per player while Exchange is down.
        "mail_admins": {
            "class": "django.utils.log.AdminEmailHandler",
            "level": "ERROR",
            "filters": ["require_debug_false", "not_bad_gateway"],
        },
    },
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {
        "django": {"handlers": ["mail_admins"], "level": "INFO"},
        # exchangelib logs request bodies at DEBUG; never let them through.
        "exchangelib": {"level": "WARNING"},
        "msal": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
    },
}
