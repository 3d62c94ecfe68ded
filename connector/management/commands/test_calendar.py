"""manage.py test_calendar ID: the test console in a terminal (a live fetch, nothing saved)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from connector.models import Calendar
from connector.services.console import stream_console
from connector.services.console_text import render_head, render_step, render_tail


class Command(BaseCommand):
    requires_system_checks: list[str] = []  # a quick look; manage.py check is there for that
    help = (
        "Fetch a calendar live through the same pipeline as the refresh and show each step "
        "as it ends, each room's outcome with Exchange's own code, every event kept or "
        "dropped (with its sensitivity and free/busy), the alarms and what the screens show. "
        "Answers within CONSOLE_BUDGET_SECONDS. Saves nothing. Exits with status 1 when a "
        "room cannot be read."
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
        run, steps = stream_console(calendar)
        self.stdout.write(render_head(run), ending="")
        for step in steps:  # each step as it ends
            self.stdout.write(render_step(step), ending="")
            self.stdout.flush()
        self.stdout.write(render_tail(run, show_ics=options["ics"]), ending="")
        if not run.ok:
            where = "partly failed" if run.partial else "failed"
            raise CommandError(
                f"{calendar.calendar_id}: {where} at “{run.failed_step_title}” "
                f"({run.error_code}): {run.error_message}",
                returncode=1,
            )
