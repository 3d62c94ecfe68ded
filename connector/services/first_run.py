"""The first run: the steps from an empty site to a player reading a feed.

Until a feed has been served once (``Milestone.FIRST_FEED``, noted by the feed
view on its first 200), the admin's home page lists the steps in order:
credential → server → calendar → feed URL, each done, next or still to come,
with a link to where it is done.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from django.contrib.auth.models import AnonymousUser, PermissionsMixin
from django.urls import reverse
from django.utils import timezone

from accounts.models import AppRegistration, ServiceAccount
from connector.models import Calendar, Milestone, Server

_noted = threading.Event()  # this process wrote (or found) the milestone: no query again


def note_feed_served(calendar_id: str) -> None:
    """A feed answered 200: remember the first time (one query per process, then none)."""
    if _noted.is_set():
        return
    Milestone.objects.get_or_create(
        name=Milestone.FIRST_FEED,
        defaults={"reached": timezone.now(), "detail": calendar_id[:200]},
    )
    _noted.set()


def forget_noted() -> None:
    """Forget that this process noted the milestone (a test's empty database)."""
    _noted.clear()


def first_feed_served() -> bool:
    return Milestone.objects.filter(name=Milestone.FIRST_FEED).exists()


@dataclass(frozen=True)
class GuideStep:
    title: str
    text: str
    state: str  # done | next | later
    url: str  # where to do it ("" when the user may not)
    link_text: str


def guide_steps(user: PermissionsMixin | AnonymousUser) -> list[GuideStep]:
    """The four steps, or none once a feed has been served."""
    if first_feed_served():
        return []
    has_credential = ServiceAccount.objects.exists() or AppRegistration.objects.exists()
    has_ics_server = Server.objects.filter(type=Server.Type.ICS).exists()
    first_calendar = Calendar.objects.order_by("pk").first()
    done = [
        has_credential or has_ics_server,  # an iCalendar URL or folder needs no credential
        Server.objects.exists(),
        first_calendar is not None,
        False,
    ]

    def may(permission: str) -> bool:
        return bool(user.has_perm(permission))

    credential_url = ""
    if may("accounts.add_serviceaccount"):
        credential_url = reverse("admin:accounts_serviceaccount_add")
    elif may("accounts.add_appregistration"):
        credential_url = reverse("admin:accounts_appregistration_add")
    feed_url = ""
    if first_calendar is not None and may("connector.view_calendar"):
        feed_url = reverse("admin:connector_calendar_change", args=[first_calendar.pk])
        feed_url += "#feed-url"
    specs = [
        (
            "Credential",
            "How ews-calendar signs in to Exchange: a service account (on-premises "
            "Exchange) or an app registration (Exchange Online, Microsoft Graph). An "
            "iCalendar URL or folder needs none.",
            credential_url,
            "Add a service account",
        ),
        (
            "Server",
            "Where the rooms are: EWS, Microsoft Graph or an iCalendar URL, with the "
            'credential. "Test connection" reads one room before you save.',
            reverse("admin:connector_server_add") if may("connector.add_server") else "",
            "Add a server",
        ),
        (
            "Calendar",
            "What a screen shows: one or more rooms of the server, merged into one feed.",
            reverse("admin:connector_calendar_add") if may("connector.add_calendar") else "",
            "Add a calendar",
        ),
        (
            "Feed URL",
            "Give the calendar's feed URL to the player (copy it, or scan its QR code). "
            "This guide goes away once a player has read a feed.",
            feed_url,
            "Show the feed URL",
        ),
    ]
    steps = []
    next_given = False
    for (title, text, url, link_text), is_done in zip(specs, done, strict=True):
        if is_done:
            state = "done"
        elif not next_given:
            state, next_given = "next", True
        else:
            state = "later"
        steps.append(GuideStep(title, text, state, url, link_text))
    return steps
