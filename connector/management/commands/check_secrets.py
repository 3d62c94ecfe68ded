"""manage.py check_secrets: every client secret with its days left; non-zero when one expired."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from connector.services.expiry import RENEW_HINT, secret_expiries


class Command(BaseCommand):
    # The system checks would print the same warnings a second time.
    requires_system_checks: list[str] = []
    help = (
        "List the client secret of every app registration with its expiry date and days "
        "left. Exits with status 1 when a secret has expired."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        items = secret_expiries()
        if not items:
            self.stdout.write("No app registrations: no client secrets to check.")
            return
        width = max(len("app registration"), *(len(item.name) for item in items))
        self.stdout.write(f"{'app registration':<{width}}  {'expires':<10}  {'days':>5}  status")
        for item in items:
            expires = f"{item.expires:%Y-%m-%d}" if item.expires else "unknown"
            days = str(item.days_left) if item.days_left is not None else "-"
            line = f"{item.name:<{width}}  {expires:<10}  {days:>5}  {item.status}"
            if item.status == "expired":
                line = self.style.ERROR(line)
            elif item.status in ("expiring", "unknown"):
                line = self.style.WARNING(line)
            self.stdout.write(line)
        problems = [item for item in items if item.status in ("expired", "expiring")]
        for item in problems:
            self.stdout.write(item.message)
        expired = [item for item in items if item.status == "expired"]
        if expired:
            raise CommandError(
                f"{len(expired)} client secret(s) expired: "
                + ", ".join(item.name for item in expired)
                + f". {RENEW_HINT}",
                returncode=1,
            )
