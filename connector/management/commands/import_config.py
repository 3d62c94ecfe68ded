"""manage.py import_config FILE [--dry-run] [--merge]: import configuration.xml, all or nothing."""

from __future__ import annotations

import sys
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from connector import xmlconfig
from connector.xmlconfig.revisions import command_user


class Command(BaseCommand):
    help = (
        "Import a configuration.xml (the PHP connector's file, or an export). The file "
        "describes the whole configuration: prints what is added, changed and removed "
        "(with --merge, nothing is removed). An invalid file changes nothing and every "
        "problem is printed as 'line N: message'. The configuration it replaces is kept "
        "as a revision (manage.py restore_config --list)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("file", help="configuration.xml, or - for standard input")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Only print what would change; write nothing.",
        )
        parser.add_argument(
            "--merge",
            action="store_true",
            help="Add and change what the file names; remove nothing it leaves out.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        data = self._read(options["file"])
        name = "standard input" if options["file"] == "-" else Path(options["file"]).name
        origin = xmlconfig.Origin(
            source="manage.py import_config",
            by=command_user(),
            reason=f"import of {name}{' (merge)' if options['merge'] else ''}",
        )
        try:
            plan = xmlconfig.import_configuration(
                data, dry_run=options["dry_run"], merge=options["merge"], origin=origin
            )
        except xmlconfig.ConfigError as exc:
            for problem in exc.problems:
                self.stderr.write(str(problem))
            raise CommandError(
                f"{options['file']}: {len(exc.problems)} problem(s); nothing was changed."
            ) from None
        print_plan(self, plan, dry_run=options["dry_run"], done="Imported")

    def _read(self, name: str) -> bytes:
        limit = settings.CONFIG_MAX_BYTES
        if name == "-":
            # One byte over the limit is enough for the size check to refuse it.
            return sys.stdin.buffer.read(limit + 1)
        path = Path(name)
        try:
            with path.open("rb") as handle:
                return handle.read(limit + 1)
        except OSError as exc:
            raise CommandError(f"{name}: {exc.strerror}") from None


def print_plan(command: BaseCommand, plan: xmlconfig.Plan, *, dry_run: bool, done: str) -> None:
    """The plan's lines, then the feeds it removes and what it means; shared with restore_config."""
    for line in plan.lines():
        command.stdout.write(line)
    if plan.merge:
        command.stdout.write("Merge: servers and calendars the file does not name are kept.")
    for feed in xmlconfig.disappearing_feeds(plan):
        command.stdout.write(command.style.WARNING(f"feed disappears: {feed}"))
    for warning in plan.warnings:
        command.stdout.write(command.style.WARNING(f"note: {warning}"))
    if plan.is_empty:
        command.stdout.write("Nothing to change.")
    elif dry_run:
        command.stdout.write(f"Dry run: {plan.summary()}; nothing was written.")
    else:
        command.stdout.write(command.style.SUCCESS(f"{done}: {plan.summary()}."))
