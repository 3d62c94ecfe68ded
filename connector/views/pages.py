"""What every page of the site shares: the admin's frame and plain-text answers."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch, reverse

from connector.models import Calendar


def page_context(request: HttpRequest, title: str) -> dict[str, Any]:
    """What admin/base_site.html expects (site header, user tools, nav sidebar)."""
    return {**admin.site.each_context(request), "title": title, "is_nav_sidebar_enabled": False}


def text_response(status: int, message: str) -> HttpResponse:
    """A short plain-text answer, as players and scripts read it."""
    return HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")


def calendar_admin_url(calendar: Calendar) -> str:
    """The calendar's change page in the admin ('' when the admin is not mounted)."""
    try:
        return reverse("admin:connector_calendar_change", args=[calendar.pk])
    except NoReverseMatch:
        return ""
