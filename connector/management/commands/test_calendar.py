"""manage.py test_calendar ID: the test console in a terminal (a live fetch, nothing saved)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from connector.models import Calendar
from connector.services.console import render_text, run_console


class Command(BaseCommand):
    requires_system_checks: list[str] = []  # a quick look; manage.py check is there for that
    help = (
        "Fetch a calendar live through the same pipeline as the refresh and show each step "
        "with its duration, every event kept or dropped, the alarms and what the screens "
        "show. Saves nothing. Exits with status 1 when the fetch fails."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("calendar_id", help="The calendar's id (as in /ical/<id>.ics).")
        parser.add_argument(
            "--ics", action="store_true", help="Also print the resulting iCalendar."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            calendar = Calendar.objects.select_related("server").get(
                calendar_id=options["calendar_id"]
            )
        except Calendar.DoesNotExist:
            raise CommandError(f"No calendar with id {options['calendar_id']!r}.") from None
        run = run_console(calendar)
        self.stdout.write(render_text(run, show_ics=options["ics"]), ending="")
        if not run.ok:
            raise CommandError(
                f"{calendar.calendar_id}: failed at the {run.failed_step_name} step: "
                f"{run.error_message}",
                returncode=1,
            )
