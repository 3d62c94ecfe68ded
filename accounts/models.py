"""Credentials: service accounts for HTTP authentication and OAuth app registrations."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from accounts.fields import EncryptedTextField, SecretsModel

MICROSOFT_AUTHORITY = "https://login.microsoftonline.com"
# Microsoft Graph in the global cloud: the resource of a graph server without a
# base URI, and the one a delegated sign-in asks for when no server names one.
GRAPH_DEFAULT_BASE_URI = "https://graph.microsoft.com"

name_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
    "Use letters, digits, dots, dashes and underscores (it appears in URLs and files).",
)


class ServiceAccount(SecretsModel):
    """A delegate (monitor) account for on-premises Exchange: username and password."""

    name = models.CharField(
        max_length=100,
        unique=True,
        validators=[name_validator],
        help_text="A short name to pick this account by, e.g. 'delegate-hq'.",
    )
    username = models.CharField(
        max_length=254,
        help_text="As Exchange expects it: delegate@example.com or DOMAIN\\delegate.",
    )
    password = EncryptedTextField(
        blank=True, help_text="Stored encrypted. Leave empty to keep the current password."
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "service account"

    def __str__(self) -> str:
        return f"{self.name} ({self.username})"


class AppRegistration(SecretsModel):
    """An Entra ID (Azure AD) app registration used for OAuth2."""

    class Flow(models.TextChoices):
        CLIENT_CREDENTIALS = "client_credentials", "App-only (client credentials)"
        DELEGATED = "delegated", "Delegated (a service account signs in once)"

    name = models.CharField(
        max_length=100,
        unique=True,
        validators=[name_validator],
        help_text="A short name to pick this registration by, e.g. 'contoso-signage'.",
    )
    flow = models.CharField(
        max_length=20,
        choices=Flow.choices,
        default=Flow.CLIENT_CREDENTIALS,
    )
    tenant = models.CharField(
        max_length=254,
        help_text="Directory (tenant) id, a GUID, or a domain such as contoso.onmicrosoft.com.",
    )
    client_id = models.CharField(
        "client id",
        max_length=100,
        help_text="Application (client) id of the app registration.",
    )
    client_secret = EncryptedTextField(
        blank=True,
        help_text="Stored encrypted. Leave empty to keep the current secret.",
    )
    secret_expires = models.DateField(
        null=True,
        blank=True,
        help_text="When the client secret expires "
        "(shown in Entra ID under Certificates & secrets).",
    )
    authority = models.URLField(
        default=MICROSOFT_AUTHORITY,
        help_text="Identity platform host. National clouds: https://login.microsoftonline.us "
        "(US Government), https://login.chinacloudapi.cn (China).",
    )
    account = models.EmailField(
        blank=True,
        help_text="Delegated flow only: the service account that signs in.",
    )
    refresh_token = EncryptedTextField(blank=True, editable=False)
    reauth_needed = models.BooleanField(
        default=False,
        editable=False,
        help_text="The delegated sign-in stopped working; an administrator must sign in again.",
    )
    secret_expired_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="When the identity platform last said this secret is expired.",
    )
    expiry_notified_days = models.IntegerField(
        null=True,
        blank=True,
        editable=False,
        help_text="Threshold (days before expiry) of the last expiry mail sent.",
    )
    # Secret rotation: the new secret waits here until it has produced a token.
    pending_secret = EncryptedTextField(blank=True, editable=False)
    pending_secret_expires = models.DateField(null=True, blank=True, editable=False)
    pending_secret_error = models.TextField(
        blank=True,
        editable=False,
        help_text="Why the identity platform refused the new secret the last time it was tried.",
    )
    service_principal_id = models.CharField(
        "enterprise application object id",
        max_length=100,
        blank=True,
        help_text="Optional: the Object ID shown in Entra ID → Enterprise applications for "
        "this app (not the app registration's). Fills in the PowerShell below.",
    )
    # Health: the last token obtained from the identity platform, the last refusal.
    last_token_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    last_hint = models.TextField(blank=True, editable=False)
    last_error_at = models.DateTimeField(null=True, blank=True, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "OAuth app registration"

    def __str__(self) -> str:
        return f"{self.name} ({self.client_id})"

    @property
    def authority_url(self) -> str:
        return f"{self.authority.rstrip('/')}/{self.tenant}"

    def days_until_expiry(self, today: dt.date | None = None) -> int | None:
        if self.secret_expires is None:
            return None
        today = today or timezone.localdate()
        return (self.secret_expires - today).days

    def expiry_status(self, today: dt.date | None = None) -> str:
        """One of ok, unknown, expiring, expired (the status vocabulary of the pages)."""
        if self.secret_expired_at is not None:
            return "expired"
        days = self.days_until_expiry(today)
        if days is None:
            return "unknown"
        if days < 0:
            return "expired"
        if days <= settings.SECRET_EXPIRY_WARNING_DAYS:
            return "expiring"
        return "ok"


class TokenCache(SecretsModel):
    """msal's serialized token cache of one app registration, shared by all processes."""

    app_registration = models.OneToOneField(
        AppRegistration, on_delete=models.CASCADE, related_name="token_cache"
    )
    data = EncryptedTextField(blank=True)
    updated = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"token cache of {self.app_registration.name}"
