"""manage.py rotate_keys: re-encrypt every stored secret with the first FIELD_ENCRYPTION_KEY."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts.keys import rotate_keys


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored password, client secret and token with the first key of "
        "FIELD_ENCRYPTION_KEY (put the new key first, the old one after a comma, run this, "
        "then remove the old key). Exits 1 when a secret could not be decrypted."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        rotation = rotate_keys()
        self.stdout.write(f"Re-encrypted {rotation.rotated} secret(s) with the first key.")
        if rotation.unreadable:
            for problem in rotation.unreadable:
                self.stderr.write(f"Could not decrypt {problem.describe()}.")
            raise CommandError(
                f"{len(rotation.unreadable)} secret(s) could not be decrypted with any key of "
                "FIELD_ENCRYPTION_KEY: add the key they were stored with (after a comma) and "
                "run rotate_keys again, or enter them again in the admin."
            )
        self.stdout.write("Every secret can now be read with the first key alone.")
