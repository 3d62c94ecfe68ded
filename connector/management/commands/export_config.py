"""manage.py export_config [-o FILE] [--include-secrets]: write the configuration.xml."""

from __future__ import annotations

import os
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from connector import xmlconfig


class Command(BaseCommand):
    help = (
        "Write the whole configuration as configuration.xml (standard output by default). "
        "Passwords, client secrets and feed keys are left out unless --include-secrets."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("-o", "--output", metavar="FILE", help="Write to FILE.")
        parser.add_argument(
            "--include-secrets",
            action="store_true",
            help="Also write passwords, client secrets and feed keys (keep the file safe).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        text = xmlconfig.export_configuration(include_secrets=options["include_secrets"])
        output = options["output"]
        if not output or output == "-":
            self.stdout.write(text, ending="")
            return
        # A file with secrets is readable by its owner only.
        mode = 0o600 if options["include_secrets"] else 0o644
        try:
            fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as exc:
            raise CommandError(f"{output}: {exc.strerror}") from None
        self.stderr.write(f"Wrote {output}.")
