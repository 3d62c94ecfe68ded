"""manage.py verify_credentials [NAME ...]: what each credential's token grants, then a real read.

Exits with status 1 when a permission is missing, a token is refused or a
room cannot be read (``connector.services.verify``).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from connector.services.verify import MISSING, OK, Report, verify_credentials


class Command(BaseCommand):
    requires_system_checks: list[str] = []
    help = (
        "For each credential (app registrations and service accounts; all when none is "
        "named): ask for a token now and compare the permissions it grants with what its "
        "servers need, then read one room through each server. Exits with status 1 when "
        "something is missing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", metavar="NAME", help="credential names")
        parser.add_argument(
            "--ordinary-mailbox",
            default="",
            metavar="ADDRESS",
            help="an ordinary user's mailbox that the credential must NOT be able to read",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        names: list[str] = options["names"]
        reports, unknown = verify_credentials(names, ordinary_mailbox=options["ordinary_mailbox"])
        if not reports and not unknown:
            self.stdout.write("No credentials to verify.")
            return
        for report in reports:
            self._print(report)
        failed = [report.credential for report in reports if not report.ok]
        if unknown:
            failed += [f"{name} (no such credential)" for name in unknown]
        if failed:
            raise CommandError("Something is missing for: " + ", ".join(failed), returncode=1)
        self.stdout.write(self.style.SUCCESS("Every credential has what its servers need."))

    def _print(self, report: Report) -> None:
        self.stdout.write(self.style.MIGRATE_HEADING(f"{report.kind} {report.credential}"))
        for line in report.lines:
            self._line(line.mark, line.status, line.text, line.fix, indent="  ")
        for check in report.servers:
            self.stdout.write(f"  server {check.server}")
            for line in check.lines:
                self._line(line.mark, line.status, line.text, line.fix, indent="    ")
        if report.note:
            self.stdout.write(f"  ({report.note})")

    def _line(self, mark: str, status: str, text: str, fix: str, *, indent: str) -> None:
        out = f"{indent}{mark} {text}"
        if status == MISSING:
            out = self.style.ERROR(out)
        elif status != OK:
            out = self.style.WARNING(out)
        self.stdout.write(out)
        if fix:
            self.stdout.write(f"{indent}  Fix: {fix}")
