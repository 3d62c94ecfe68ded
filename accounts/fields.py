"""A text field stored encrypted (accounts.crypto); Python code sees plain text."""

from __future__ import annotations

from typing import Any

from django.db import models

from accounts import crypto


class EncryptedTextField(models.TextField):
    """Plain text in Python, Fernet ciphertext in the database.

    Not searchable or orderable by value, by design.
    """

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str:
        if value is None:
            return ""
        return crypto.decrypt(value)

    def get_prep_value(self, value: Any) -> str:
        value = super().get_prep_value(value)
        if value is None:
            return ""
        return crypto.encrypt(str(value))

    def formfield(self, **kwargs: Any) -> Any:  # type: ignore[override]
        from accounts.forms import SecretInput

        kwargs.setdefault("widget", SecretInput)
        return super().formfield(**kwargs)
