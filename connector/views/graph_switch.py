"""Switch an EWS server to Microsoft Graph, after comparing what both return.

Administrators only (they change a server and pick a credential): anonymous
users go to the login page, others get 403.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache

from accounts.models import AppRegistration
from connector.models import Calendar, Server
from connector.roles import can_switch_to_graph, login_or_403
from connector.services.graph_switch import (
    compare,
    graph_base_uri_for,
    retirement_notice,
    switch_to_graph,
)
from connector.views.pages import page_context

admin_required = login_or_403(
    can_switch_to_graph, "Only administrators may switch a server to Graph."
)


class SwitchForm(forms.Form):
    app_registration = forms.ModelChoiceField(
        queryset=AppRegistration.objects.filter(flow=AppRegistration.Flow.CLIENT_CREDENTIALS),
        help_text="Needs the Calendars.Read application permission (admin consent) in Entra ID.",
    )
    base_uri = forms.URLField(
        label="Graph base URI",
        assume_scheme="https",
        help_text="Filled in for the cloud of the EWS server; change it only for a national "
        "cloud or a test double.",
    )

    def __init__(self, *args: Any, server: Server, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["calendar"] = forms.ModelChoiceField(
            queryset=server.calendars.order_by("calendar_id"),
            required=False,
            to_field_name="calendar_id",
            help_text="Compare reads this calendar both ways.",
        )


def _server(server_id: str) -> Server:
    return get_object_or_404(Server.objects.select_related("app_registration"), server_id=server_id)


def _initial(server: Server) -> dict[str, Any]:
    first = server.calendars.order_by("calendar_id").first()
    return {
        "app_registration": server.app_registration_id,
        "base_uri": graph_base_uri_for(server.base_uri),
        "calendar": first.calendar_id if first else None,
    }


def _server_admin_url(server: Server) -> str:
    try:
        return reverse("admin:connector_server_change", args=[server.pk])
    except NoReverseMatch:
        return reverse("status")


def _context(request: HttpRequest, server: Server, title: str) -> dict[str, Any]:
    context = page_context(request, title)
    context.update(
        {
            "server": server,
            "server_admin_url": _server_admin_url(server),
            "retirement_notice": retirement_notice(timezone.localdate()),
            "calendars": list(server.calendars.order_by("calendar_id")),
        }
    )
    return context


@never_cache
@admin_required
def switch_page(request: HttpRequest, server_id: str) -> HttpResponse:
    server = _server(server_id)
    if server.type != Server.Type.EWS:
        messages.info(request, f"{server.server_id} is not an EWS server; nothing to switch.")
        return redirect(_server_admin_url(server))
    if request.method == "POST":
        form = SwitchForm(request.POST, server=server)
        if form.is_valid():
            try:
                switch_to_graph(
                    server,
                    form.cleaned_data["app_registration"],
                    base_uri=form.cleaned_data["base_uri"],
                )
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                messages.success(
                    request,
                    f"{server.server_id} now reads through Microsoft Graph; its "
                    f"{server.calendars.count()} calendar(s) refresh within a minute.",
                )
                return redirect(_server_admin_url(server))
    else:
        form = SwitchForm(initial=_initial(server), server=server)
    context = _context(request, server, f"Switch {server.server_id} to Microsoft Graph")
    context["form"] = form
    return render(request, "connector/switch_to_graph.html", context)


@never_cache
@admin_required
def compare_page(request: HttpRequest, server_id: str) -> HttpResponse:
    server = _server(server_id)
    if server.type != Server.Type.EWS:
        messages.info(request, f"{server.server_id} is not an EWS server; nothing to compare.")
        return redirect(_server_admin_url(server))
    data = request.GET.copy()
    for key, value in _initial(server).items():
        if not data.get(key) and value is not None:
            data[key] = value
    form = SwitchForm(data, server=server)
    context = _context(request, server, f"Compare EWS and Graph for {server.server_id}")
    context["form"] = form
    if form.is_valid() and form.cleaned_data.get("calendar") is not None:
        calendar: Calendar = form.cleaned_data["calendar"]
        context["calendar"] = calendar
        context["comparison"] = compare(
            calendar, form.cleaned_data["app_registration"], base_uri=form.cleaned_data["base_uri"]
        )
    return render(request, "connector/compare.html", context)
