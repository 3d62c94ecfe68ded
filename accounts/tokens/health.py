"""Each app registration's health: its last token from the identity platform, its last error.

The credentials list shows both (``accounts.admin``). Recorded where every
token passes (``accounts.tokens.acquire_token``): a token really obtained
from the identity platform stamps ``last_token_at`` and clears the error; a
token served from a cache writes nothing, so a refresh costs no write. An
error keeps its message and hint (never a secret: the messages of
``accounts.tokens.errors`` name the app and the tenant only).
"""

from __future__ import annotations

from django.utils import timezone

from accounts.models import AppRegistration
from connector.core.errors import SourceError


def record_token(app: AppRegistration, *, from_cache: bool) -> None:
    """A token was obtained; from the identity platform unless ``from_cache``."""
    if from_cache and not app.last_error:
        return
    now = timezone.now()
    fields: dict[str, object] = {"last_error": "", "last_hint": "", "last_error_at": None}
    if not from_cache:
        fields["last_token_at"] = now
    AppRegistration.objects.filter(pk=app.pk).update(**fields)
    for name, value in fields.items():
        setattr(app, name, value)


def record_error(app: AppRegistration, error: SourceError) -> None:
    """The identity platform (or the way to it) refused a token."""
    fields = {
        "last_error": str(error.message)[:2000],
        "last_hint": str(error.hint or "")[:2000],
        "last_error_at": timezone.now(),
    }
    AppRegistration.objects.filter(pk=app.pk).update(**fields)
    for name, value in fields.items():
        setattr(app, name, value)
