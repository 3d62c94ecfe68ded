"""manage.py import_config FILE [--dry-run]: import a configuration.xml, all or nothing."""

from __future__ import annotations

import sys
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from connector import xmlconfig


class Command(BaseCommand):
    help = (
        "Import a configuration.xml (the PHP connector's file, or an export). The file "
        "describes the whole configuration: prints what is added, changed and removed. "
        "An invalid file changes nothing and every problem is printed as 'line N: message'."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("file", help="configuration.xml, or - for standard input")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Only print what would change; write nothing.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        data = self._read(options["file"])
        try:
            plan = xmlconfig.import_configuration(data, dry_run=options["dry_run"])
        except xmlconfig.ConfigError as exc:
            for problem in exc.problems:
                self.stderr.write(str(problem))
            raise CommandError(
                f"{options['file']}: {len(exc.problems)} problem(s); nothing was changed."
            ) from None

        for line in plan.lines():
            self.stdout.write(line)
        for warning in plan.warnings:
            self.stdout.write(self.style.WARNING(f"note: {warning}"))
        if plan.is_empty:
            self.stdout.write("Nothing to change.")
        elif options["dry_run"]:
            self.stdout.write(f"Dry run: {plan.summary()}; nothing was written.")
        else:
            self.stdout.write(self.style.SUCCESS(f"Imported: {plan.summary()}."))

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
