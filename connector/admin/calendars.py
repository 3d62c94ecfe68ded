"""Admin of calendars, with their rooms (resources), filters and alarms inline.

Other features hook in here by small additions: an action in ``actions``, a
link in ``readonly_fields``, a URL in ``get_urls``. The configuration.xml
import and export pages (``configuration``) hang under the calendars' URLs
(``/admin/connector/calendar/import/`` ...), and their links sit on the
calendar list.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern
from django.utils.html import escape, format_html

from accounts.admin import KeepSecretsForm, SecretsAdmin
from connector import xmlconfig
from connector.admin import configuration
from connector.models import Alarm, Calendar, Filter, Resource, Server
from connector.models.calendars import FREE_BUSY, IMPORTANCES, SENSITIVITIES, new_feed_key
from connector.roles import can_point_anywhere
from connector.services.feed_urls import feed_urls, keyed_path, qr_svg
from connector.validators import normalize_list, shown_url, split_list


class CommaListField(forms.MultipleChoiceField):
    """Check boxes in the form, a comma list ('Personal,Private') in the model."""

    widget = forms.CheckboxSelectMultiple

    def __init__(self, choices: list[str], model_field: str, **kwargs: Any) -> None:
        self.names = list(choices)
        field = Filter._meta.get_field(model_field)
        assert isinstance(field, models.Field)
        # Declared fields do not inherit the model's default: a new calendar's
        # boxes must show it (the mask of private events, privacy by default).
        kwargs.setdefault("initial", field.get_default())
        kwargs.setdefault("help_text", field.help_text)
        kwargs.setdefault("label", str(field.verbose_name).capitalize())
        super().__init__(choices=[(name, name) for name in choices], **kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return split_list(normalize_list(value, self.names))
        return value

    def clean(self, value: Any) -> str:  # type: ignore[override]
        return normalize_list(",".join(super().clean(value)), self.names)

    def has_changed(self, initial: Any, data: Any) -> bool:
        before = normalize_list(
            initial if isinstance(initial, str) else ",".join(initial or []), self.names
        )
        after = normalize_list(",".join(data or []), self.names)
        return before != after


class FilterForm(forms.ModelForm):
    sensitivity = CommaListField(SENSITIVITIES, "sensitivity", required=False)
    importance = CommaListField(IMPORTANCES, "importance", required=False)
    free_busy = CommaListField(FREE_BUSY, "free_busy", required=False)
    mask_sensitivity = CommaListField(SENSITIVITIES, "mask_sensitivity", required=False)

    class Meta:
        model = Filter
        fields = [
            "is_cancelled",
            "is_draft",
            "is_meeting",
            "sensitivity",
            "importance",
            "free_busy",
            "subject",
            "mask_sensitivity",
            "detail_level",
        ]


class FilterInline(admin.StackedInline):
    model = Filter
    form = FilterForm
    can_delete = False
    max_num = 1
    extra = 1
    verbose_name_plural = "filters and privacy"


class ResourceForm(forms.ModelForm):
    """A room, or for an iCalendar server a URL or path, checked against who enters it.

    ``may_point_anywhere`` comes from ``CalendarAdmin.get_formset_kwargs``: without
    the right to change servers, an ``ics`` resource must stay under the server's
    base URI (connector.roles.can_point_anywhere). What an administrator saved
    before stays as it is while the calendar keeps its server.
    """

    def __init__(self, *args: Any, may_point_anywhere: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.may_point_anywhere = may_point_anywhere

    class Meta:
        model = Resource
        fields = ["address", "position"]

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean()
        self._check_where_it_points()
        return cleaned

    def _check_where_it_points(self) -> None:
        address = self.cleaned_data.get("address")
        # The inline's foreign key field gives the calendar being saved, with the
        # server chosen in this same form (it may be new, or a new server).
        calendar = self.cleaned_data.get("calendar")
        if self.may_point_anywhere or address is None or not isinstance(calendar, Calendar):
            return
        server = calendar.server if calendar.server_id else None
        if server is None or server.type != Server.Type.ICS or server.contains_resource(address):
            return
        if self._unchanged(calendar):
            return
        base = shown_url(server.base_uri.strip()) or "none"
        raise forms.ValidationError(
            {
                "address": (
                    f"{address} points outside the base URI of server {server.server_id} "
                    f"({base}). Only users who may change servers (administrators) may give "
                    "a calendar a resource elsewhere: ask one, or give a path under the base URI."
                )
            }
        )

    def _unchanged(self, calendar: Calendar) -> bool:
        """The saved resource, on the saved server: an administrator's choice, kept."""
        if self.instance.pk is None or "address" in self.changed_data or calendar.pk is None:
            return False
        return Calendar.objects.filter(pk=calendar.pk, server_id=calendar.server_id).exists()


class ResourceInline(admin.TabularInline):
    model = Resource
    form = ResourceForm
    fields = ("address", "position")
    ordering = ("position", "id")
    extra = 1
    verbose_name = "room (resource)"
    verbose_name_plural = "rooms (resources): merged into one feed; none = the account's own"


class AlarmInline(admin.TabularInline):
    model = Alarm
    fields = ("edge", "related", "offset")
    max_num = 2
    extra = 0
    verbose_name_plural = "display alarms (when an event appears and disappears on screen)"


class CalendarForm(KeepSecretsForm):
    secret_fields = ("password",)

    class Meta:
        model = Calendar
        fields = [
            "calendar_id",
            "server",
            "label",
            "request_window",
            "cache_persistence",
            "send_cache_on_server_error",
            "timezone",
            "include_body",
            "username",
            "password",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The admin shows help texts as HTML: "/ical/<id>.ics" would lose its "<id>".
        for field in self.fields.values():
            field.help_text = escape(field.help_text)

    def keep_secret(self, name: str, cleaned: dict[str, Any]) -> bool:
        # Clearing the username removes the calendar's own credentials altogether.
        return bool(cleaned.get("username"))


@admin.register(Calendar)
class CalendarAdmin(SecretsAdmin):
    form = CalendarForm
    inlines = [ResourceInline, FilterInline, AlarmInline]
    list_display = (
        "calendar_id",
        "label",
        "server",
        "rooms",
        "request_window",
        "cache_persistence",
        "updated",
    )
    list_filter = (
        "server__type",
        "server",
        "send_cache_on_server_error",
        "filter__detail_level",
    )
    search_fields = ("calendar_id", "label", "resources__address", "server__server_id")
    list_select_related = ("server",)
    readonly_fields = ("feed_key", "updated")
    actions = ["refresh_now", "export_selected", "export_selected_with_secrets", "new_feed_keys"]
    fieldsets = (
        (None, {"fields": ("calendar_id", "server", "label")}),
        (
            "Fetching",
            {
                "fields": (
                    "request_window",
                    "cache_persistence",
                    "send_cache_on_server_error",
                    "timezone",
                    "include_body",
                )
            },
        ),
        (
            "Own credentials (instead of the server's)",
            {"classes": ("collapse",), "fields": ("username", "password")},
        ),
        ("Feed", {"fields": ("feed_key", "updated")}),
    )

    class Media:
        js = ["connector/copy.js"]  # the copy buttons of feed URLs (no inline script)

    def view_on_site(self, obj: Calendar) -> str:  # type: ignore[override]
        """ "View on site" opens the feed itself, with its key so that it opens anywhere."""
        return keyed_path(obj)

    def get_list_display(self, request: HttpRequest) -> tuple[Any, ...]:
        """The columns, with the feed URL by the host name this request used."""

        @admin.display(description="feed URL")
        def feed_url(obj: Calendar) -> str:
            url = feed_urls(request, obj).plain
            return format_html(
                '<code class="ews-feed-url">{}</code> <button type="button" class="ews-copy" '
                'data-copy="{}" title="Copy the feed URL">Copy</button>',
                url,
                url,
            )

        return (*super().get_list_display(request), feed_url)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        calendar = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if calendar is not None:
            urls = feed_urls(request, calendar)
            context["feed_urls"] = urls
            context["feed_qr"] = qr_svg(urls.plain, title=f"QR code of {urls.plain}")
            if urls.keyed:
                context["feed_keyed_qr"] = qr_svg(urls.keyed, title="QR code of the URL with key")
        return super().change_view(request, object_id, form_url, context)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Calendar]:
        return super().get_queryset(request).prefetch_related("resources")

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        # A calendar made here keeps its screens on their last good data when Exchange
        # fails (SPEC); an imported one keeps what its file says (xmlconfig's defaults).
        initial: dict[str, Any] = dict(super().get_changeform_initial_data(request))
        initial.setdefault("send_cache_on_server_error", True)
        return initial

    def get_formset_kwargs(
        self, request: HttpRequest, obj: Any, inline: Any, prefix: str
    ) -> dict[str, Any]:
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        if isinstance(inline, ResourceInline):
            # Who saves decides where an iCalendar resource may point (ResourceForm).
            kwargs["form_kwargs"] = {"may_point_anywhere": can_point_anywhere(request.user)}
        return kwargs

    @admin.display(description="rooms")
    def rooms(self, obj: Calendar) -> str:
        addresses = [resource.address for resource in obj.resources.all()]
        if not addresses:
            return "(account's own calendar)"
        if len(addresses) > 2:
            return f"{addresses[0]}, {addresses[1]} and {len(addresses) - 2} more"
        return ", ".join(addresses)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        # A calendar made here starts with the default filters, which mask
        # private events (privacy by default), even when the filter form was
        # left untouched and therefore not saved.
        Filter.objects.get_or_create(calendar=form.instance)

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [*configuration.urls(wrap), *super().get_urls()]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "can_import_config": configuration.can_import(request.user),
            "can_export_config": configuration.can_export(request.user),
        }
        return super().changelist_view(request, extra_context)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if not configuration.can_export(request.user):
            actions.pop("export_selected", None)
        if not configuration.can_export(request.user, include_secrets=True):
            actions.pop("export_selected_with_secrets", None)
        return actions

    @admin.action(description="Export to configuration.xml")
    def export_selected(self, request: HttpRequest, queryset: QuerySet[Calendar]) -> HttpResponse:
        return configuration.xml_download(
            xmlconfig.export_configuration(calendars=queryset, include_secrets=False)
        )

    @admin.action(description="Export to configuration.xml, with passwords and secrets")
    def export_selected_with_secrets(
        self, request: HttpRequest, queryset: QuerySet[Calendar]
    ) -> HttpResponse:
        return configuration.xml_download(
            xmlconfig.export_configuration(calendars=queryset, include_secrets=True)
        )

    @admin.action(
        permissions=["change"],
        description="Give new feed keys (players outside the network need the new key)",
    )
    def new_feed_keys(self, request: HttpRequest, queryset: QuerySet[Calendar]) -> None:
        count = 0
        for calendar in queryset:
            calendar.feed_key = new_feed_key()
            calendar.save(update_fields=["feed_key", "updated"])
            count += 1
        self.message_user(request, f"{count} calendar(s) have a new feed key.")

    # "Refresh now" and the "Test" button (templates/admin/connector/calendar/change_form.html)
    # are for administrators and signage staff (connector.roles).
    def has_refresh_permission(self, request: HttpRequest) -> bool:
        from connector.roles import can_operate

        return can_operate(request.user)

    @admin.action(
        permissions=["refresh"],
        description="Refresh now (read Exchange and replace the feed's snapshot)",
    )
    def refresh_now(self, request: HttpRequest, queryset: QuerySet[Calendar]) -> None:
        from connector.services.refresh import refresh_calendars

        for outcome in refresh_calendars(queryset.select_related("server")):
            level = messages.SUCCESS if outcome.ok else messages.ERROR
            self.message_user(request, outcome.line(), level=level)
