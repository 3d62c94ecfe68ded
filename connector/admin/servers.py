"""Admin of servers: where calendars read from, and with which credential.

EWS in Exchange Online is flagged on the list and the change page: Microsoft
switches it off (SPEC), and the admin says so until the server moves to Graph.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html

from connector.models import Server
from connector.models.servers import EXCHANGE_ONLINE_EWS_WARNING


@admin.register(Server)
class ServerAdmin(admin.ModelAdmin):
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
            "Learned while connecting",
            {
                "classes": ("collapse",),
                "fields": ("ews_version", "ews_endpoint", "ews_endpoint_discovered", "updated"),
            },
        ),
    )

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
