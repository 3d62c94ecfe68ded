"""manage.py restore_config --list | N [--dry-run]: the configurations imports replaced.

Every import first keeps the configuration it replaces as a revision. ``--list``
numbers them, newest first; ``restore_config N`` imports revision N back
through the same path as import_config (keeping, first, the configuration it
replaces as a new revision).
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from connector import xmlconfig
from connector.management.commands.import_config import print_plan
from connector.models import ConfigRevision
from connector.xmlconfig.revisions import command_user, revisions


class Command(BaseCommand):
    help = (
        "List the configurations that imports replaced (--list), or restore one by its "
        "number: the whole configuration comes back as it was, through the same import "
        "as import_config. --dry-run prints what would change and writes nothing."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("number", nargs="?", type=int, help="The revision to restore.")
        parser.add_argument("--list", action="store_true", help="List the kept revisions.")
        parser.add_argument(
            "--dry-run", action="store_true", help="Only print what would change; write nothing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["list"]:
            if options["number"] is not None:
                raise CommandError("Give either --list or a revision number, not both.")
            self._list()
            return
        if options["number"] is None:
            raise CommandError("Give a revision number (see restore_config --list).")
        self._restore(options["number"], dry_run=options["dry_run"])

    def _list(self) -> None:
        kept = list(revisions())
        if not kept:
            self.stdout.write("No revisions yet: each import keeps the configuration it replaces.")
            return
        for revision in kept:
            when = timezone.localtime(revision.created).strftime("%Y-%m-%d %H:%M")
            source = revision.source + (f" by {revision.by}" if revision.by else "")
            reason = f", before the {revision.reason}" if revision.reason else ""
            self.stdout.write(f"{revision.pk:>4}  {when}  {source}{reason}: {revision.counts}")

    def _restore(self, number: int, *, dry_run: bool) -> None:
        try:
            revision = ConfigRevision.objects.get(pk=number)
        except ConfigRevision.DoesNotExist:
            raise CommandError(
                f"There is no revision {number} (see restore_config --list)."
            ) from None
        origin = xmlconfig.Origin(
            source="manage.py restore_config",
            by=command_user(),
            reason=f"restore of revision {revision.pk}",
        )
        try:
            plan = xmlconfig.restore_revision(revision, dry_run=dry_run, origin=origin)
        except xmlconfig.ConfigError as exc:
            for problem in exc.problems:
                self.stderr.write(str(problem))
            raise CommandError(
                f"revision {number}: {len(exc.problems)} problem(s); nothing was changed."
            ) from None
        print_plan(self, plan, dry_run=dry_run, done=f"Restored revision {revision.pk}")
