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
