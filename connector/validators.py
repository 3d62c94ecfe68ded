"""Validators with messages an administrator understands, and the URL rules they share.

``url_origin`` and ``path_inside`` say where a URL really points (as urllib3,
which requests connects with, reads it): the iCalendar source sends credentials
only to its server's origin, and the admin lets only users who may change
servers point a calendar outside its server's base URI.
"""

from __future__ import annotations

import posixpath
import re
from urllib.parse import SplitResult, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator, RegexValidator
from django.utils.deconstruct import deconstructible
from urllib3.util import parse_url

DEFAULT_PORTS = {"http": 80, "https": 443}

url_safe_id = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._~-]*$",
    "An id may contain only letters, digits, '.', '_', '~' and '-', and must start with a "
    "letter or digit (it is part of the feed's URL).",
)

_email = EmailValidator()

# A feed key given by hand (configuration.xml's feedKey): the key alone lets anyone
# outside ICAL_ALLOWED_NETWORKS read the feed, so it must not be guessable.
FEED_KEY_FORM = re.compile(r"[A-Za-z0-9_-]{16,64}")
FEED_KEY_MIN_DIFFERENT = 8
FEED_KEY_RULE = (
    f"16 to 64 letters, digits, '-' or '_', with at least {FEED_KEY_MIN_DIFFERENT} different "
    "characters"
)


def feed_key_strength(value: str) -> None:
    """16 to 64 URL-safe characters, at least 8 different (so not 'aaaaaaaaaaaaaaaa').

    Generated keys (32 random characters of 64) have about 25 different ones;
    one with fewer than 8 comes once in more than 10^20.
    """
    if not FEED_KEY_FORM.fullmatch(value):
        raise ValidationError("use 16 to 64 letters, digits, '-' or '_'", code="feed_key_form")
    if len(set(value)) < FEED_KEY_MIN_DIFFERENT:
        raise ValidationError(
            f"use at least {FEED_KEY_MIN_DIFFERENT} different characters: a key such as "
            "aaaaaaaaaaaaaaaa is guessed at once (leave feedKey out for a random key)",
            code="weak_feed_key",
        )


def smtp_address(value: str) -> None:
    try:
        _email(value)
    except ValidationError as exc:
        raise ValidationError(
            "%(value)s is not an SMTP address (expected something like room@contoso.com).",
            params={"value": value},
            code="invalid_smtp",
        ) from exc


def time_zone_name(value: str) -> None:
    if not value:
        return
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(
            "%(value)s is not a known time zone; use an IANA name such as Europe/Paris.",
            params={"value": value},
            code="invalid_timezone",
        ) from exc
    if value not in available_timezones() and value != "UTC":
        raise ValidationError("%(value)s is not a known time zone.", params={"value": value})


@deconstructible
class CommaListOf:
    """Validate a comma list against choices, case-insensitively."""

    def __init__(self, choices: list[str], what: str) -> None:
        self.choices = list(choices)
        self.what = what

    def __call__(self, value: str) -> None:
        lowered = {choice.lower() for choice in self.choices}
        for item in split_list(value):
            if item.lower() not in lowered:
                raise ValidationError(
                    "%(item)s is not a %(what)s; use a comma list of %(choices)s.",
                    params={"item": item, "what": self.what, "choices": ", ".join(self.choices)},
                    code="invalid_choice",
                )

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, CommaListOf)
            and self.choices == other.choices
            and self.what == other.what
        )


def split_list(value: str) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def normalize_list(value: str, choices: list[str]) -> str:
    """'private, normal' → 'Normal,Private' in the order of choices."""
    wanted = {item.lower() for item in split_list(value)}
    return ",".join(choice for choice in choices if choice.lower() in wanted)


# -- URLs: where credentials may go -----------------------------------------------------


def split_url(text: str) -> SplitResult | None:
    """urlsplit, or None for what it cannot split ('https://host]', 'https://[x')."""
    try:
        return urlsplit(text)
    except ValueError:
        return None


def is_http_url(text: str) -> bool:
    """An http(s) URL, as the iCalendar source tells a URL from a path."""
    parts = split_url(text)
    if parts is None:  # not a URL one can read; http(s) if it says so
        return text.strip().lower().startswith(("http:", "https:"))
    return parts.scheme.lower() in DEFAULT_PORTS


def url_origin(url: str) -> tuple[str, str, int] | None:
    """The origin (scheme, host, port) of an http(s) URL; None when it has none.

    None too when urllib and urllib3 read the host differently
    (``https://a\\@b/`` is host b for one, a for the other): urllib3 decides
    where requests connects, and a URL the two parsers disagree on is one that
    neither credentials nor a permission check should trust.
    """
    try:
        ours = urlsplit(url)
        theirs = parse_url(url)
        scheme = ours.scheme.lower()
        hosts = {_host(ours.hostname), _host(theirs.host)}
        ports = {ours.port or DEFAULT_PORTS.get(scheme), theirs.port or DEFAULT_PORTS.get(scheme)}
    except (ValueError, UnicodeError):  # a port that is no number, a host no codec takes
        return None
    if scheme not in DEFAULT_PORTS or (theirs.scheme or "").lower() != scheme:
        return None
    if len(hosts) != 1 or "" in hosts or len(ports) != 1:
        return None
    port = ports.pop()
    assert port is not None
    return scheme, hosts.pop(), port


def _host(host: str | None) -> str:
    # Lower case, no IPv6 brackets, IDNA: as requests writes the host it connects to.
    host = (host or "").strip("[]").lower()
    return host if host.isascii() else host.encode("idna").decode("ascii")


def shown_url(url: str) -> str:
    """A URL fit for messages: no user:password@, no query (published links hide keys there)."""
    parts = split_url(url)
    if parts is None:
        return "(a URL that cannot be read)"
    if not parts.scheme:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def path_inside(path: str, folder: str) -> bool:
    """Whether a URL path lies in a folder path, dot segments and escapes resolved.

    ``%2e%2e`` counts as ``..`` and a backslash as a slash: some servers (IIS)
    decode and read them so before they resolve paths.
    """
    resolved = posixpath.normpath("/" + unquote(path or "/").replace("\\", "/"))
    base = posixpath.normpath("/" + unquote(folder or "/").replace("\\", "/")).rstrip("/")
    return resolved == base or resolved.startswith(base + "/") or base == ""
