"""Client secrets that expire: what is due, and the daily mail to ADMINS.

An app registration's client secret has an expiry date (entered in the admin
or imported from ``expires="..."``); the identity platform may also refuse it
as expired (``accounts.tokens.errors`` then sets ``secret_expired_at``). The admin
banner, the status page, ``manage.py check``, ``manage.py check_secrets``,
/healthz and /metrics all read :func:`secret_expiries`, so they agree.

The daily task mails ADMINS once per threshold (30, 7 and 1 days before, and
once when expired), not every day: ``AppRegistration.expiry_notified_days``
remembers the last threshold mailed, claimed with a conditional UPDATE so two
workers never send the same mail.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import send_mail
from django.utils import timezone

from accounts.models import AppRegistration

log = logging.getLogger(__name__)

# expiry_notified_days of a secret whose "expired" mail went out.
EXPIRED = -1
SCHEDULE_NAME = "Secret expiry mail"
SCHEDULE_FUNC = "connector.tasks.notify_expiring_secrets"

RENEW_HINT = (
    "Create a new client secret in Entra ID (App registrations > Certificates & secrets), "
    "then enter it and its expiry date on the app registration in the admin."
)

# Sort order of the status vocabulary: the most urgent first.
_URGENCY = {"expired": 0, "expiring": 1, "unknown": 2, "ok": 3}


@dataclass(frozen=True)
class SecretExpiry:
    """One app registration's client secret, as the pages show it (never the secret)."""

    pk: int
    name: str
    client_id: str
    expires: dt.date | None
    days_left: int | None
    status: str  # expired | expiring | unknown | ok
    marked_expired_at: dt.datetime | None  # the identity platform refused it as expired
    notified_days: int | None

    @property
    def message(self) -> str:
        """One plain sentence about this secret."""
        subject = f"The client secret of app registration {self.name}"
        if self.marked_expired_at is not None:
            when = timezone.localtime(self.marked_expired_at).strftime("%Y-%m-%d %H:%M")
            return f"{subject} was refused as expired by the identity platform ({when})."
        if self.expires is None or self.days_left is None:
            return f"{subject} has no expiry date; enter it to be warned in time."
        if self.days_left < 0:
            return f"{subject} expired on {self.expires:%Y-%m-%d}."
        if self.days_left == 0:
            return f"{subject} expires today ({self.expires:%Y-%m-%d})."
        if self.days_left == 1:
            return f"{subject} expires tomorrow ({self.expires:%Y-%m-%d})."
        return f"{subject} expires in {self.days_left} days ({self.expires:%Y-%m-%d})."


def thresholds() -> list[int]:
    """Days before expiry at which a mail goes out, largest first (30, 7, 1 by default)."""
    warning = settings.SECRET_EXPIRY_WARNING_DAYS
    return sorted({warning, *(days for days in (7, 1) if days < warning)}, reverse=True)


def describe(app: AppRegistration, today: dt.date | None = None) -> SecretExpiry:
    today = today or timezone.localdate()
    return SecretExpiry(
        pk=app.pk,
        name=app.name,
        client_id=app.client_id,
        expires=app.secret_expires,
        days_left=app.days_until_expiry(today),
        status=app.expiry_status(today),
        marked_expired_at=app.secret_expired_at,
        notified_days=app.expiry_notified_days,
    )


def secret_expiries(today: dt.date | None = None) -> list[SecretExpiry]:
    """Every app registration's secret, the most urgent first."""
    today = today or timezone.localdate()
    found = [describe(app, today) for app in AppRegistration.objects.all()]
    return sorted(
        found,
        key=lambda item: (
            _URGENCY[item.status],
            item.days_left if item.days_left is not None else 10**6,
            item.name,
        ),
    )


def secret_warnings(today: dt.date | None = None) -> list[SecretExpiry]:
    """The secrets to warn about: expired, or expiring within SECRET_EXPIRY_WARNING_DAYS."""
    return [item for item in secret_expiries(today) if item.status in ("expired", "expiring")]


def due_threshold(item: SecretExpiry) -> int | None:
    """The threshold this secret has reached: EXPIRED, 1, 7, 30 ... or None when not yet."""
    if item.status == "expired":
        return EXPIRED
    if item.days_left is None:
        return None
    reached = [days for days in thresholds() if item.days_left <= days]
    return min(reached) if reached else None


def _claim(item: SecretExpiry, value: int | None) -> bool:
    """Move expiry_notified_days from what we read to ``value``; False if another got there."""
    changed = AppRegistration.objects.filter(
        pk=item.pk, expiry_notified_days=item.notified_days
    ).update(expiry_notified_days=value)
    return changed == 1


def _mail(item: SecretExpiry) -> None:
    servers = sorted(
        AppRegistration.objects.get(pk=item.pk).servers.values_list("server_id", flat=True)
    )
    lines = [item.message, ""]
    if servers:
        lines.append("Servers using it: " + ", ".join(servers) + ".")
        lines.append("Their calendars stop refreshing when the secret expires.")
        lines.append("")
    lines.append(RENEW_HINT)
    lines.append("")
    lines.append("This mail is sent once per threshold (" + _threshold_words() + ").")
    subject = "[ews-calendar] " + item.message.rstrip(".")
    send_mail(
        subject,
        "\n".join(lines),
        settings.SERVER_EMAIL,
        [address for _, address in settings.ADMINS],
    )


def _threshold_words() -> str:
    return ", ".join(f"{days} days" if days > 1 else "1 day" for days in thresholds()) + (
        " before, and once when expired"
    )


def notify_one(item: SecretExpiry) -> bool:
    """Mail ADMINS about one secret if it reached a threshold not yet mailed."""
    due = due_threshold(item)
    notified = item.notified_days
    if due is None:
        if notified is not None:
            # A renewed secret (date moved out of the window): start over.
            _claim(item, None)
        return False
    if notified is not None and due >= notified:
        if due > notified:
            # The date moved later (a new secret, still within the window): an
            # administrator just changed it, so record without mailing.
            _claim(item, due)
        return False
    if not _claim(item, due):
        return False
    try:
        _mail(item)
    except Exception:
        log.exception("Could not mail ADMINS about the secret of %s", item.name)
        AppRegistration.objects.filter(pk=item.pk, expiry_notified_days=due).update(
            expiry_notified_days=notified
        )
        return False
    log.info("Mailed ADMINS: %s", item.message)
    return True


def notify_expiring_secrets() -> str:
    """The daily task: mail ADMINS about secrets that reached a threshold; a one-line summary."""
    if not settings.ADMINS:
        warnings = secret_warnings()
        if warnings:
            log.warning(
                "%d client secret(s) expire soon or expired, but ADMINS is empty: no mail sent",
                len(warnings),
            )
        return f"ADMINS is empty; {len(warnings)} secret(s) to warn about"
    sent = [item.name for item in secret_expiries() if notify_one(item)]
    if sent:
        return f"mailed ADMINS about {len(sent)} secret(s): " + ", ".join(sent)
    return "no secret reached a new threshold"


def ensure_schedule() -> None:
    """The daily django-q2 schedule of :func:`notify_expiring_secrets` (idempotent)."""
    from django_q.models import Schedule

    schedule, created = Schedule.objects.get_or_create(
        name=SCHEDULE_NAME,
        defaults={"func": SCHEDULE_FUNC, "schedule_type": Schedule.DAILY, "repeats": -1},
    )
    if not created and (schedule.func, schedule.schedule_type) != (SCHEDULE_FUNC, Schedule.DAILY):
        schedule.func = SCHEDULE_FUNC
        schedule.schedule_type = Schedule.DAILY
        schedule.repeats = -1
        schedule.save()
