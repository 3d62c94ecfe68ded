"""Validators with messages an administrator understands."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator, RegexValidator
from django.utils.deconstruct import deconstructible

url_safe_id = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._~-]*$",
    "An id may contain only letters, digits, '.', '_', '~' and '-', and must start with a "
    "letter or digit (it is part of the feed's URL).",
)

_email = EmailValidator()


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
