"""Template context for admin pages: the secret-expiry banner."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from connector.services.expiry import SecretExpiry, secret_warnings


def _banner(request: HttpRequest) -> list[SecretExpiry]:
    user = getattr(request, "user", None)
    if user is None or not (user.is_active and user.is_staff):
        return []
    return secret_warnings()


def secret_expiry(request: HttpRequest) -> dict[str, Any]:
    """``secret_expiry_warnings``: evaluated (one query) only when a page shows it."""
    return {"secret_expiry_warnings": SimpleLazyObject(lambda: _banner(request))}
