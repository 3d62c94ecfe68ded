"""System checks: ``manage.py check`` (and every command that runs checks) warns of secrets.

connector.W001: a client secret expires within SECRET_EXPIRY_WARNING_DAYS.
connector.W002: a client secret has expired (or the identity platform refused it as expired).
connector.W003: a stored secret cannot be decrypted with FIELD_ENCRYPTION_KEY.
connector.W004: calendars follow UTC only because no time zone was named anywhere.

Both are warnings, not errors: an error would stop ``migrate`` and the server
from starting, and the application must keep serving its last snapshots.
"""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Tags, Warning, register
from django.db import DatabaseError

CONNECTOR_TAG = "connector"


@register(CONNECTOR_TAG, Tags.security)
def check_secret_expiry(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from connector.services.expiry import RENEW_HINT, secret_warnings

    try:
        warnings = secret_warnings()
    except DatabaseError:
        # No database yet (before the first migrate): nothing to say.
        return []
    messages: list[CheckMessage] = []
    for item in warnings:
        if item.status == "expired":
            messages.append(Warning(item.message, hint=RENEW_HINT, id="connector.W002"))
        else:
            messages.append(Warning(item.message, hint=RENEW_HINT, id="connector.W001"))
    return messages


UNDECRYPTABLE_HINT = (
    "FIELD_ENCRYPTION_KEY is not the key these were stored with: put that key back (the new "
    "key first, the old one after a comma) and run manage.py rotate_keys, or enter the "
    "secrets again in the admin."
)


@register(CONNECTOR_TAG, Tags.security)
def check_undecryptable_secrets(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from accounts.keys import undecryptable_secrets

    try:
        problems = undecryptable_secrets()
    except DatabaseError:
        return []
    return [
        Warning(
            f"{problem.describe().capitalize()} cannot be decrypted.",
            hint=UNDECRYPTABLE_HINT,
            id="connector.W003",
        )
        for problem in problems
    ]


@register(CONNECTOR_TAG)
def check_time_zone(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from django.conf import settings

    if not settings.TIME_ZONE_UTC_BY_DEFAULT:
        return []
    return [
        Warning(
            "Calendars without a timezone of their own use UTC: TIME_ZONE is not set and "
            "this host's zone is UTC, so 'today' and day-start/day-end alarms are computed "
            "in UTC.",
            hint="Set TIME_ZONE (e.g. TIME_ZONE=Europe/Paris in .env) to the zone the screens "
            "live in, as the PHP connector used its server's zone.",
            id="connector.W004",
        )
    ]
