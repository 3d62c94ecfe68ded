"""Admin of credentials: secrets are entered, never shown back."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from accounts.crypto import Sealed
from accounts.fields import stored_value
from accounts.forms import SecretInput
from accounts.models import MICROSOFT_AUTHORITY, AppRegistration, ServiceAccount

KEEP_HELP = "Stored encrypted and never shown. Leave empty to keep the stored value."
UNREADABLE_HELP = (
    "The stored value cannot be decrypted with FIELD_ENCRYPTION_KEY (the key changed without "
    "keeping the old one). Enter it again, or put the old key back and run manage.py rotate_keys."
)


class KeepSecretsForm(forms.ModelForm):
    """A model form whose secret fields keep the stored value when left empty.

    The widgets (accounts.forms.SecretInput) never render a value, so an
    untouched secret box comes back empty; that must mean "unchanged", not
    "erase". The stored value is also dropped from ``initial`` so that nothing
    (hidden initial fields, a custom widget) can echo it into the page.
    """

    secret_fields: tuple[str, ...] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # What is stored, unread when no key of FIELD_ENCRYPTION_KEY decrypts it: an empty
        # box then keeps the ciphertext as it is, and the page says to enter it again.
        self._stored_secrets = {
            name: stored_value(self.instance, name) for name in self.secret_fields
        }
        for name in self.secret_fields:
            self.initial.pop(name, None)
            field = self.fields.get(name)
            if field is None:
                continue
            field.required = False
            # The admin gives text fields a textarea, which would echo the value.
            field.widget = SecretInput()
            if isinstance(self._stored_secrets[name], Sealed):
                field.help_text = UNREADABLE_HELP
                field.widget.attrs["placeholder"] = "(cannot be decrypted: enter it again)"
            elif self._stored_secrets[name]:
                field.help_text = KEEP_HELP
                field.widget.attrs["placeholder"] = "(stored; leave empty to keep)"

    def keep_secret(self, name: str, cleaned: dict[str, Any]) -> bool:
        """Whether an empty box keeps the stored secret (subclasses may say no)."""
        return True

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for name in self.secret_fields:
            if name in self.fields and not cleaned.get(name) and self.keep_secret(name, cleaned):
                cleaned[name] = self._stored_secrets[name]
        return cleaned


class SecretsAdmin(admin.ModelAdmin):
    """An admin whose form is a KeepSecretsForm.

    A view-only page (a user without the change permission) renders every
    field as plain text, which would print the decrypted secret: leave the
    secret fields off that page.
    """

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or self.has_change_permission(request, obj):
            return fieldsets
        secrets = set(getattr(self.form, "secret_fields", ()))
        return [
            (name, {**options, "fields": [f for f in options["fields"] if f not in secrets]})
            for name, options in fieldsets
        ]


class ServiceAccountForm(KeepSecretsForm):
    secret_fields = ("password",)

    class Meta:
        model = ServiceAccount
        fields = ["name", "username", "password"]


class AppRegistrationForm(KeepSecretsForm):
    secret_fields = ("client_secret",)

    authority = forms.URLField(
        assume_scheme="https",
        initial=MICROSOFT_AUTHORITY,
        help_text=AppRegistration._meta.get_field("authority").help_text,
    )

    class Meta:
        model = AppRegistration
        fields = [
            "name",
            "flow",
            "tenant",
            "client_id",
            "client_secret",
            "secret_expires",
            "authority",
            "account",
        ]
        widgets = {"secret_expires": forms.DateInput(attrs={"type": "date"})}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("flow") == AppRegistration.Flow.DELEGATED and not cleaned.get("account"):
            self.add_error("account", "The delegated flow needs the service account's address.")
        return cleaned


@admin.register(ServiceAccount)
class ServiceAccountAdmin(SecretsAdmin):
    form = ServiceAccountForm
    list_display = ("name", "username", "server_count", "updated")
    search_fields = ("name", "username")
    readonly_fields = ("created", "updated")

    def get_queryset(self, request: HttpRequest) -> QuerySet[ServiceAccount]:
        return super().get_queryset(request).annotate(_server_count=Count("servers"))

    @admin.display(description="servers", ordering="_server_count")
    def server_count(self, obj: ServiceAccount) -> int:
        return getattr(obj, "_server_count", 0)


class SecretExpiryFilter(admin.SimpleListFilter):
    title = "secret expiry"
    parameter_name = "expiry"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]
    ) -> list[tuple[str, str]]:
        return [
            ("expired", "Expired"),
            ("expiring", "Expiring soon"),
            ("ok", "Valid"),
            ("unknown", "No date"),
        ]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[AppRegistration]
    ) -> QuerySet[AppRegistration]:
        wanted = self.value()
        if not wanted:
            return queryset
        keep = [app.pk for app in queryset if app.expiry_status() == wanted]
        return queryset.filter(pk__in=keep)


@admin.register(AppRegistration)
class AppRegistrationAdmin(SecretsAdmin):
    form = AppRegistrationForm
    list_display = (
        "name",
        "flow",
        "tenant",
        "client_id",
        "secret_expiry",
        "reauth_needed",
        "server_count",
    )
    list_filter = ("flow", SecretExpiryFilter, "reauth_needed", "authority")
    search_fields = ("name", "tenant", "client_id", "account")
    readonly_fields = ("reauth_needed", "sign_in", "secret_expired_at", "created", "updated")
    fieldsets = (
        (None, {"fields": ("name", "flow", "tenant", "client_id", "authority")}),
        ("Client secret", {"fields": ("client_secret", "secret_expires", "secret_expired_at")}),
        ("Delegated sign-in", {"fields": ("account", "reauth_needed", "sign_in")}),
        (None, {"fields": ("created", "updated")}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[AppRegistration]:
        return super().get_queryset(request).annotate(_server_count=Count("servers"))

    @admin.display(description="servers", ordering="_server_count")
    def server_count(self, obj: AppRegistration) -> int:
        return getattr(obj, "_server_count", 0)

    @admin.display(description="sign-in")
    def sign_in(self, obj: AppRegistration) -> str:
        """The delegated flow's "Sign in" link, with where the sign-in stands."""
        if obj.pk is None or obj.flow != AppRegistration.Flow.DELEGATED:
            return "For the delegated flow: save it, then sign in here."
        label = "Sign in"
        if obj.reauth_needed:
            state = "Re-authentication needed: the sign-in stopped working."
            label = "Re-authenticate"
        elif obj.refresh_token:
            state = f"Signed in as {obj.account}." if obj.account else "Signed in."
        else:
            state = "Nobody has signed in yet."
        return format_html(
            '{} <a class="button" href="{}">{}</a>',
            state,
            reverse("accounts-sign-in", args=[obj.pk]),
            label,
        )

    @admin.display(description="secret expires", ordering="secret_expires")
    def secret_expiry(self, obj: AppRegistration) -> str:
        status = obj.expiry_status()
        days = obj.days_until_expiry()
        if status == "expired":
            text = "expired"
        elif days is None:
            text = "no date entered"
        else:
            text = f"in {days} days"
        if obj.secret_expires:
            text = f"{obj.secret_expires:%Y-%m-%d} ({text})"
        return format_html('<span class="status status-{}">{}</span>', status, text)
