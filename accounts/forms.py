"""Form widgets for secrets: entered, never shown back."""

from __future__ import annotations

from typing import Any

from django import forms


class SecretInput(forms.PasswordInput):
    """A password box that never renders the stored value.

    Left empty on an existing object, the stored secret is kept
    (see accounts.admin.KeepSecretsForm).
    """

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(
            attrs={"autocomplete": "new-password", **(attrs or {})}, render_value=False
        )


class PasswordRequiredMixin(forms.BaseForm):
    """A form whose ``password`` must be given, or kept from what is stored.

    Put before KeepSecretsForm in the bases: its ``clean`` has then put the stored
    password back for an empty box, so only a password that is nowhere is refused.
    A service account without one would only fail later, at Exchange, as a wrong
    password.
    """

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        if "password" in self.fields and not cleaned.get("password"):
            self.add_error(
                "password",
                "A service account needs its password: Exchange refuses a sign-in without one.",
            )
        return cleaned
