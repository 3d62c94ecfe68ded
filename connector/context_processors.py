"""Template context for admin pages: the secret-expiry and re-authentication banners."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from accounts.models import AppRegistration
from connector.services.expiry import SecretExpiry, secret_warnings


def _banner(request: HttpRequest) -> list[SecretExpiry]:
    user = getattr(request, "user", None)
    if user is None or not (user.is_active and user.is_staff):
        return []
    return secret_warnings()


def secret_expiry(request: HttpRequest) -> dict[str, Any]:
    """``secret_expiry_warnings``: evaluated (one query) only when a page shows it."""
    return {"secret_expiry_warnings": SimpleLazyObject(lambda: _banner(request))}


def _reauth(request: HttpRequest) -> list[AppRegistration]:
    user = getattr(request, "user", None)
    if user is None or not (user.is_active and user.is_staff):
        return []
    return list(AppRegistration.objects.filter(reauth_needed=True).order_by("name"))


def reauth_needed(request: HttpRequest) -> dict[str, Any]:
    """``reauth_warnings``: delegated sign-ins that stopped working (one query, when shown)."""
    return {"reauth_warnings": SimpleLazyObject(lambda: _reauth(request))}
