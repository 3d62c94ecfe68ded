"""Admin of credentials: secrets are entered, never shown back."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, JsonResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from accounts import setup_help
from accounts.crypto import Sealed
from accounts.fields import stored_value
from accounts.forms import PasswordRequiredMixin, SecretInput
from accounts.models import MICROSOFT_AUTHORITY, AppRegistration, ServiceAccount
from accounts.tokens.tenant import lookup_tenant
from connector.core.errors import SourceError

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


class ServiceAccountForm(PasswordRequiredMixin, KeepSecretsForm):
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
    # Rotation: the new secret waits until it has produced a token (accounts.tokens).
    new_client_secret = forms.CharField(
        label="new client secret",
        required=False,
        strip=True,
        widget=SecretInput(),
        help_text="Rotating the secret: enter the new secret's VALUE here. The current secret "
        "stays in use until the new one has produced a token (at the next token request, "
        "or press Verify), so a typo never takes the screens down. Stored encrypted.",
    )
    new_secret_expires = forms.DateField(
        label="new secret expires",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="The new secret's expiry date (Entra ID → Certificates & secrets).",
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
            "service_principal_id",
        ]
        widgets = {"secret_expires": forms.DateInput(attrs={"type": "date"})}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("flow") == AppRegistration.Flow.DELEGATED and not cleaned.get("account"):
            self.add_error("account", "The delegated flow needs the service account's address.")
        if cleaned.get("new_client_secret"):
            if self.instance.pk is None:
                self.add_error(
                    "new_client_secret", "A new registration takes its secret in 'client secret'."
                )
            elif cleaned.get("new_client_secret") == self._stored_secrets.get("client_secret"):
                self.add_error("new_client_secret", "This is the current secret.")
        elif cleaned.get("new_secret_expires"):
            self.add_error("new_client_secret", "Enter the new secret with its expiry date.")
        return cleaned

    def save(self, commit: bool = True) -> AppRegistration:
        app: AppRegistration = super().save(commit=False)
        new_secret = self.cleaned_data.get("new_client_secret")
        if new_secret:
            app.pending_secret = new_secret
            app.pending_secret_expires = self.cleaned_data.get("new_secret_expires")
            app.pending_secret_error = ""
        if commit:
            app.save()
        return app


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


class HealthFilter(admin.SimpleListFilter):
    title = "health"
    parameter_name = "health"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]
    ) -> list[tuple[str, str]]:
        return [("errors", "With errors"), ("ok", "Without errors")]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[AppRegistration]
    ) -> QuerySet[AppRegistration]:
        failing = ~Q(last_error="") | Q(reauth_needed=True)
        if self.value() == "errors":
            return queryset.filter(failing)
        if self.value() == "ok":
            return queryset.exclude(failing)
        return queryset


@admin.register(AppRegistration)
class AppRegistrationAdmin(SecretsAdmin):
    form = AppRegistrationForm
    list_display = (
        "name",
        "flow",
        "tenant",
        "client_id",
        "secret_expiry",
        "last_token",
        "health",
        "calendars_using",
    )
    list_filter = ("flow", HealthFilter, SecretExpiryFilter, "reauth_needed", "authority")
    search_fields = ("name", "tenant", "client_id", "account")
    readonly_fields = (
        "reauth_needed",
        "sign_in",
        "secret_expired_at",
        "tenant_lookup",
        "rotation_state",
        "permissions_needed",
        "consent_link",
        "rbac_powershell",
        "verify",
        "last_token",
        "health",
        "calendars_using",
        "created",
        "updated",
    )
    fieldsets = (
        (None, {"fields": ("name", "flow", "tenant", "tenant_lookup", "client_id", "authority")}),
        ("Client secret", {"fields": ("client_secret", "secret_expires", "secret_expired_at")}),
        (
            "Rotate the client secret",
            {"fields": ("new_client_secret", "new_secret_expires", "rotation_state")},
        ),
        (
            "Permissions and admin consent",
            {
                "fields": (
                    "permissions_needed",
                    "consent_link",
                    "service_principal_id",
                    "rbac_powershell",
                    "verify",
                )
            },
        ),
        ("Health", {"fields": ("last_token", "health", "calendars_using")}),
        ("Delegated sign-in", {"fields": ("account", "reauth_needed", "sign_in")}),
        (None, {"fields": ("created", "updated")}),
    )

    class Media:
        js = ("accounts/tenant_lookup.js",)

    # What only someone who may change the registration can use.
    EDITING_HELPERS = frozenset(
        {"tenant_lookup", "new_client_secret", "new_secret_expires", "verify"}
    )

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or self.has_change_permission(request, obj):
            return fieldsets
        return [
            (
                name,
                {
                    **options,
                    "fields": [f for f in options["fields"] if f not in self.EDITING_HELPERS],
                },
            )
            for name, options in fieldsets
        ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[AppRegistration]:
        return (
            super()
            .get_queryset(request)
            .annotate(_server_count=Count("servers"))
            .prefetch_related("servers__calendars")
        )

    def get_urls(self) -> list[URLPattern]:
        lookup = path(
            "tenant-lookup/",
            self.admin_site.admin_view(self.tenant_lookup_view),
            name="accounts_appregistration_tenant_lookup",
        )
        return [lookup, *super().get_urls()]

    def tenant_lookup_view(self, request: HttpRequest) -> JsonResponse:
        """The tenant id of ``?domain=`` at ``?authority=``, for the button beside Tenant."""
        if not (self.has_add_permission(request) or self.has_change_permission(request)):
            return JsonResponse({"error": "Not allowed."}, status=403)
        authority = request.GET.get("authority", "").strip() or MICROSOFT_AUTHORITY
        field = forms.URLField(assume_scheme="https")
        try:
            authority = field.clean(authority)
        except forms.ValidationError:
            return JsonResponse({"error": "The authority is not a URL."}, status=400)
        if not authority.startswith("https://"):
            return JsonResponse({"error": "The authority must be an https:// URL."}, status=400)
        try:
            tenant = lookup_tenant(authority, request.GET.get("domain", ""))
        except SourceError as error:
            return JsonResponse({"error": error.message, "hint": error.hint}, status=200)
        return JsonResponse(
            {
                "tenant_id": tenant.tenant_id,
                "message": f"{tenant.domain} belongs to tenant {tenant.tenant_id}.",
            }
        )

    # -- the change page's helpers -----------------------------------------------------
    @admin.display(description="")
    def tenant_lookup(self, obj: AppRegistration) -> str:
        return format_html(
            '<button type="button" class="button" id="tenant-lookup" data-url="{}">'
            "Look up the tenant id</button> "
            '<span id="tenant-lookup-result" role="status"></span>'
            '<div class="help">Enter a domain of the tenant in Tenant (contoso.com or '
            "contoso.onmicrosoft.com) and press the button: its tenant id (a GUID) is "
            "looked up at the authority and replaces the domain.</div>",
            reverse("admin:accounts_appregistration_tenant_lookup"),
        )

    @admin.display(description="new secret")
    def rotation_state(self, obj: AppRegistration) -> str:
        if obj.pk is None or not obj.pending_secret:
            return "No new secret is waiting."
        expires = (
            f", expires {obj.pending_secret_expires:%Y-%m-%d}" if obj.pending_secret_expires else ""
        )
        if obj.pending_secret_error:
            return format_html(
                '<span class="status status-failed">The new secret was refused; the current '
                'secret stays in use.</span><div class="help" id="pending-secret-error">{}</div>',
                obj.pending_secret_error,
            )
        return format_html(
            '<span class="status status-unknown">A new secret{} is waiting: it replaces the '
            "current one as soon as it has produced a token (press Verify to try it now).</span>",
            expires,
        )

    @admin.display(description="permissions needed")
    def permissions_needed(self, obj: AppRegistration) -> str:
        rows = [
            (need.label, setup_help.permission_words(permission))
            for need in setup_help.needs(obj)
            for permission in need.permissions
        ]
        return format_html(
            "<ul>{}</ul>", format_html_join("", "<li>{}: <strong>{}</strong></li>", rows)
        )

    @admin.display(description="admin consent")
    def consent_link(self, obj: AppRegistration) -> str:
        if obj.pk is None or obj.flow != AppRegistration.Flow.CLIENT_CREDENTIALS:
            return "For the app-only flow: save the registration, then the link appears here."
        url = setup_help.consent_url(obj)
        return format_html(
            '<a href="{}" id="consent-url" target="_blank" rel="noopener noreferrer">{}</a>'
            '<div class="help">An administrator of the tenant (Privileged Role Administrator '
            "or Global Administrator) opens this link to grant the permissions configured on "
            "the app registration for the whole tenant.</div>",
            url,
            url,
        )

    @admin.display(description="scope to room mailboxes")
    def rbac_powershell(self, obj: AppRegistration) -> str:
        if obj.pk is None or obj.flow != AppRegistration.Flow.CLIENT_CREDENTIALS:
            return "For the app-only flow."
        return format_html(
            '<div class="help">RBAC for Applications lets the app read the room mailboxes '
            "and nothing else:</div>"
            '<pre id="rbac-powershell" style="white-space: pre-wrap">{}</pre>'
            '<div class="help">{}</div>',
            setup_help.rbac_powershell(obj),
            setup_help.REMOVE_TENANT_WIDE,
        )

    @admin.display(description="verify")
    def verify(self, obj: AppRegistration) -> str:
        if obj.pk is None:
            return "Save the registration first."
        return format_html(
            '<a class="button" id="verify-link" href="{}">Verify</a>'
            '<div class="help">Asks for a token now, shows the permissions it grants against '
            "what the servers need, and reads one room through each server.</div>",
            reverse("verify-app-registration", args=[obj.pk]),
        )

    # -- health ------------------------------------------------------------------------
    @admin.display(description="last token", ordering="last_token_at")
    def last_token(self, obj: AppRegistration) -> str:
        if obj.last_token_at is None:
            return "never"
        return f"{timezone.localtime(obj.last_token_at):%Y-%m-%d %H:%M}"

    @admin.display(description="last error")
    def health(self, obj: AppRegistration) -> str:
        if obj.reauth_needed and not obj.last_error:
            return format_html(
                '<span class="status status-failed">{}</span>', "re-authentication needed"
            )
        if not obj.last_error:
            return format_html('<span class="status status-ok">{}</span>', "none")
        when = (
            f"{timezone.localtime(obj.last_error_at):%Y-%m-%d %H:%M}: " if obj.last_error_at else ""
        )
        return format_html(
            '<span class="status status-failed">{}{}</span><div class="help">{}</div>',
            when,
            obj.last_error,
            obj.last_hint,
        )

    @admin.display(description="calendars")
    def calendars_using(self, obj: AppRegistration) -> str:
        if obj.pk is None:
            return "-"
        calendars = sorted(
            (calendar for server in obj.servers.all() for calendar in server.calendars.all()),  # type: ignore[attr-defined]
            key=lambda calendar: calendar.calendar_id,
        )
        if not calendars:
            return "none"
        return format_html_join(
            ", ",
            '<a href="{}">{}</a>',
            (
                (reverse("admin:connector_calendar_change", args=[c.pk]), c.calendar_id)
                for c in calendars
            ),
        )

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
