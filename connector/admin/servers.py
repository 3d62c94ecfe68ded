"""Admin of servers: where calendars read from, and with which credential.

EWS in Exchange Online is flagged on the list and the change page: Microsoft
switches it off (SPEC), and the admin says so until the server moves to Graph.

The form shows the fields of the server's type only (TYPE_FIELDS; the browser
hides the others as the type changes, static/connector/server_form.js, and the
form drops what was left in them), and "Test connection" reads one room with
the settings as entered, without saving them (connector/services/connection_test.py).
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import render
from django.urls import URLPattern, path
from django.utils.html import escape, format_html

from accounts.models import GRAPH_DEFAULT_BASE_URI
from connector.models import Server
from connector.models.servers import EXCHANGE_ONLINE_EWS_WARNING
from connector.services.connection_test import run_connection_test

# The fields each type of server uses; the others are hidden and emptied.
TYPE_FIELDS: dict[str, tuple[str, ...]] = {
    Server.Type.EWS: (
        "base_uri",
        "autodiscover",
        "service_account",
        "http_scheme",
        "app_registration",
    ),
    Server.Type.GRAPH: ("base_uri", "app_registration"),
    Server.Type.ICS: ("base_uri", "service_account"),
}
TYPED_FIELDS = ("base_uri", "autodiscover", "service_account", "http_scheme", "app_registration")


class ServerForm(forms.ModelForm):
    test_resource = forms.CharField(
        label="Room to read",
        required=False,
        max_length=500,
        help_text="For Test connection: a room's address (room-a@contoso.com), or for an "
        "iCalendar server a URL or path under the base URI. Empty reads the account's own "
        "calendar (or the base URI itself).",
    )

    # Set on the form class of Test connection: an id already taken does not stop a test.
    testing = False

    class Meta:
        model = Server
        fields = [
            "server_id",
            "type",
            "label",
            "base_uri",
            "autodiscover",
            "service_account",
            "http_scheme",
            "app_registration",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            # The admin shows help texts as HTML: "<base URI>" would vanish.
            field.help_text = escape(field.help_text)
        type_field = self.fields.get("type")
        if type_field is not None:
            type_field.widget.attrs.update(
                {
                    "data-type-fields": json.dumps(TYPE_FIELDS),
                    "data-typed-fields": json.dumps(TYPED_FIELDS),
                    "data-graph-base-uri": GRAPH_DEFAULT_BASE_URI,
                    "class": "ews-server-type",
                }
            )
        if self.instance.pk is None and self._chosen_type() == Server.Type.GRAPH:
            self.initial.setdefault("base_uri", GRAPH_DEFAULT_BASE_URI)

    def _chosen_type(self) -> str:
        if self.is_bound:
            return str(self.data.get(self.add_prefix("type")) or "")
        return str(self.initial.get("type") or self.instance.type or "")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        kind = cleaned.get("type")
        if kind not in TYPE_FIELDS:
            return cleaned
        for name in TYPED_FIELDS:
            if name in TYPE_FIELDS[kind] or name not in cleaned:
                continue
            # A field the type does not use, hidden in the form: whatever it held goes.
            model_field = Server._meta.get_field(name)
            assert isinstance(model_field, models.Field)
            cleaned[name] = None if model_field.is_relation else model_field.get_default()
        if kind == Server.Type.GRAPH and not cleaned.get("base_uri"):
            cleaned["base_uri"] = GRAPH_DEFAULT_BASE_URI
        return cleaned

    def validate_unique(self) -> None:
        if not self.testing:
            super().validate_unique()


@admin.register(Server)
class ServerAdmin(admin.ModelAdmin):
    form = ServerForm
    list_display = (
        "server_id",
        "label",
        "type",
        "endpoint",
        "credential",
        "calendar_count",
        "exchange_online_ews",
    )
    list_filter = ("type", "http_scheme")
    search_fields = ("server_id", "label", "base_uri", "autodiscover")
    list_select_related = ("service_account", "app_registration")
    readonly_fields = ("ews_version", "ews_endpoint", "ews_endpoint_discovered", "updated")
    fieldsets = (
        (None, {"fields": ("server_id", "type", "label")}),
        ("Where", {"fields": ("base_uri", "autodiscover")}),
        (
            "Authentication",
            {
                "fields": ("service_account", "http_scheme", "app_registration"),
                "description": "On-premises EWS: a service account and its HTTP scheme. "
                "Exchange Online (EWS or Graph): an app registration.",
            },
        ),
        (
            "Test connection",
            {
                "fields": ("test_resource",),
                "description": "Reads one room with the settings above, as entered, and "
                "saves nothing.",
            },
        ),
        (
            "Learned while connecting",
            {
                "classes": ("collapse",),
                "fields": ("ews_version", "ews_endpoint", "ews_endpoint_discovered", "updated"),
            },
        ),
    )

    class Media:
        js = ["connector/server_form.js"]  # fields per type, Test connection (no inline script)

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "add/test-connection/",
                wrap(self.test_connection_view),
                name="connector_server_test_connection_add",
            ),
            path(
                "<path:object_id>/test-connection/",
                wrap(self.test_connection_view),
                name="connector_server_test_connection",
            ),
            *super().get_urls(),
        ]

    def test_connection_view(self, request: HttpRequest, object_id: str = "") -> HttpResponse:
        """Read one room with the posted settings; answer in plain words; save nothing."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        server = self.get_object(request, object_id) if object_id else None
        if object_id and server is None:
            raise PermissionDenied
        allowed = (
            self.has_change_permission(request, server)
            if server is not None
            else self.has_add_permission(request)
        )
        if not allowed:
            raise PermissionDenied
        base_form = self.get_form(request, server, change=server is not None)
        form_class = type("TestingServerForm", (base_form,), {"testing": True})
        form = form_class(request.POST, instance=server)
        context: dict[str, Any] = {"result": None, "problems": []}
        if form.is_valid():
            resource = form.cleaned_data["test_resource"]
            context["result"] = run_connection_test(form.instance, resource)
        else:
            context["problems"] = [
                f"{form.fields[name].label if name in form.fields else 'Settings'}: {error}"
                for name, errors in form.errors.items()
                for error in errors
            ]
        if request.headers.get("X-Requested-With") == "fetch":
            return render(request, "admin/connector/server/connection_test_result.html", context)
        context.update(self.admin_site.each_context(request))
        context["title"] = "Test connection"
        return render(request, "admin/connector/server/connection_test_page.html", context)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Server]:
        return super().get_queryset(request).annotate(_calendar_count=Count("calendars"))

    @admin.display(description="calendars", ordering="_calendar_count")
    def calendar_count(self, obj: Server) -> int:
        return getattr(obj, "_calendar_count", 0)

    @admin.display(description="endpoint")
    def endpoint(self, obj: Server) -> str:
        if obj.base_uri:
            return obj.base_uri
        return f"autodiscover: {obj.autodiscover}" if obj.autodiscover else ""

    @admin.display(description="credential")
    def credential(self, obj: Server) -> str:
        if obj.service_account_id and obj.service_account:
            return f"{obj.service_account.name} ({obj.get_http_scheme_display()})"
        if obj.app_registration_id and obj.app_registration:
            return obj.app_registration.name
        return "none"

    @admin.display(description="EWS in Exchange Online", boolean=False)
    def exchange_online_ews(self, obj: Server) -> str:
        if not obj.points_at_exchange_online_ews:
            return ""
        return format_html(
            '<span class="status status-expiring" title="{}">ends 2027-04-01</span>',
            EXCHANGE_ONLINE_EWS_WARNING,
        )

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        if request.method == "GET":
            server = self.get_object(request, object_id)
            if server is not None and server.points_at_exchange_online_ews:
                messages.warning(request, EXCHANGE_ONLINE_EWS_WARNING)
        return super().change_view(request, object_id, form_url, extra_context)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if request.method == "GET":
            flagged = [
                server.server_id
                for server in Server.objects.filter(type=Server.Type.EWS)
                if server.points_at_exchange_online_ews
            ]
            if flagged:
                messages.warning(
                    request,
                    f"{EXCHANGE_ONLINE_EWS_WARNING} Servers concerned: {', '.join(flagged)}.",
                )
        return super().changelist_view(request, extra_context)
