"""manage.py refresh_calendars [ID ...]: refresh snapshots now, one line per calendar."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from connector.models import Calendar
from connector.services.rounds import refresh_in_rounds


class Command(BaseCommand):
    help = (
        "Refresh the snapshots of the given calendars (all when none given) now, fetching "
        "each room once. Prints one line per calendar; exits with status 1 when one failed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("calendar_ids", nargs="*", metavar="ID", help="calendar ids")

    def handle(self, *args: Any, **options: Any) -> None:
        ids: list[str] = options["calendar_ids"]
        calendars = list(
            Calendar.objects.select_related("server")
            .prefetch_related("resources")
            .order_by("calendar_id")
        )
        if ids:
            known = {calendar.calendar_id: calendar for calendar in calendars}
            unknown = [calendar_id for calendar_id in ids if calendar_id not in known]
            if unknown:
                raise CommandError(f"Unknown calendar id(s): {', '.join(unknown)}")
            calendars = [known[calendar_id] for calendar_id in dict.fromkeys(ids)]
        if not calendars:
            self.stdout.write("No calendars to refresh.")
            return
        # Rounds that keep every slot of each upstream busy, several at once.
        outcomes = {outcome.calendar_id: outcome for outcome in refresh_in_rounds(calendars)}
        failed = 0
        for calendar in calendars:
            outcome = outcomes[calendar.calendar_id]
            line = outcome.line()
            if outcome.ok:
                self.stdout.write(self.style.SUCCESS(line))
            elif outcome.skipped:
                self.stdout.write(self.style.WARNING(line))
            else:
                failed += 1
                self.stdout.write(self.style.ERROR(line))
        if failed:
            raise CommandError(f"{failed} of {len(calendars)} calendar(s) failed to refresh.")
