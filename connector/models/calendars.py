"""Calendars: what a feed shows, from which rooms, filtered how, with which alarms."""

from __future__ import annotations

import datetime as dt
import secrets
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from accounts.fields import EncryptedTextField, SecretsModel
from connector.core.records import Window
from connector.models.servers import Server
from connector.validators import (
    FEED_KEY_RULE,
    CommaListOf,
    feed_key_strength,
    smtp_address,
    time_zone_name,
    url_safe_id,
)

SENSITIVITIES = ["Normal", "Personal", "Private", "Confidential"]
IMPORTANCES = ["Low", "Normal", "High"]
FREE_BUSY = ["Free", "Tentative", "Busy", "OOF", "WorkingElsewhere"]
PRIVATE_SENSITIVITIES = "Personal,Private,Confidential"


def new_feed_key() -> str:
    return secrets.token_urlsafe(24)


class Calendar(SecretsModel):
    calendar_id = models.CharField(
        "id",
        max_length=100,
        unique=True,
        validators=[url_safe_id],
        help_text="Part of the feed's URL: /ical/<id>.ics",
    )
    server = models.ForeignKey(Server, on_delete=models.PROTECT, related_name="calendars")
    label = models.CharField(
        max_length=200,
        blank=True,
        help_text="Replaces the LOCATION of every event when set.",
    )
    request_window = models.IntegerField(
        default=7,
        validators=[MinValueValidator(1), MaxValueValidator(366)],
        help_text="Days of events, from 00:00 today in the calendar's time zone.",
    )
    cache_persistence = models.IntegerField(
        default=300,
        validators=[MinValueValidator(0), MaxValueValidator(86400)],
        help_text="Seconds a snapshot stays fresh; 0 fetches live on every request.",
    )
    send_cache_on_server_error = models.BooleanField(
        default=False,
        help_text="When Exchange fails, serve the last good snapshot instead of an error.",
    )
    timezone = models.CharField(
        max_length=64,
        blank=True,
        validators=[time_zone_name],
        help_text="IANA time zone such as Europe/Paris; empty uses the site's TIME_ZONE.",
    )
    username = models.CharField(
        max_length=254,
        blank=True,
        help_text="Credentials for this calendar instead of the server's (on-premises EWS).",
    )
    password = EncryptedTextField(blank=True, help_text="Stored encrypted. Leave empty to keep it.")
    include_body = models.BooleanField(
        default=False,
        help_text="Fill DESCRIPTION with the event's body (costs extra requests).",
    )
    feed_key = models.CharField(
        max_length=64,
        default=new_feed_key,
        editable=False,
        validators=[feed_key_strength],
        help_text="Lets players outside ICAL_ALLOWED_NETWORKS fetch the feed with ?key=. "
        "Made at random (32 characters); one given in configuration.xml (feedKey) must have "
        f"{FEED_KEY_RULE}.",
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["calendar_id"]
        permissions = [
            (
                "refresh_calendar",
                "Can refresh calendars, open the test console and the status page",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(request_window__gte=1), name="calendar_request_window_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(cache_persistence__gte=0),
                name="calendar_cache_persistence_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return self.calendar_id

    @property
    def tzinfo(self) -> ZoneInfo:
        return ZoneInfo(self.timezone or settings.TIME_ZONE)

    def window(self, now: dt.datetime | None = None) -> Window:
        """``request_window`` days from 00:00 today in the calendar's time zone, in UTC."""
        tz = self.tzinfo
        today = (now or timezone.now()).astimezone(tz).date()
        start = dt.datetime.combine(today, dt.time(), tzinfo=tz)
        end = dt.datetime.combine(today + dt.timedelta(days=self.request_window), dt.time(), tz)
        return Window(start.astimezone(dt.UTC), end.astimezone(dt.UTC))

    def clean(self) -> None:
        if self.password and not self.username:
            raise ValidationError({"username": "A calendar password needs a username."})


class Resource(models.Model):
    """A room mailbox (or, for an iCalendar server, a URL or path) merged into the feed."""

    calendar = models.ForeignKey(Calendar, on_delete=models.CASCADE, related_name="resources")
    address = models.CharField(
        max_length=500,
        help_text="Primary SMTP address of the room mailbox, e.g. room-a@contoso.com.",
    )
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["calendar", "position", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["calendar", "address"], name="resource_once_per_calendar"
            ),
        ]

    def __str__(self) -> str:
        return self.address

    def clean(self) -> None:
        # The calendar may not be saved yet (a new calendar in the admin): its
        # server is known all the same. getattr: a missing relation is None.
        server = getattr(getattr(self, "calendar", None), "server", None)
        if server is not None and server.type == Server.Type.ICS:
            return
        try:
            smtp_address(self.address)
        except ValidationError as exc:
            raise ValidationError({"address": exc.messages}) from exc


class Filter(models.Model):
    """What a calendar drops or masks (SPEC: filters apply in this order)."""

    class DetailLevel(models.TextChoices):
        FULL = "full", "Full details"
        LIMITED = "limited", "Limited: subject and organizer only"
        AVAILABILITY = "availability", "Availability only: Busy / Tentative / Out of office"

    calendar = models.OneToOneField(Calendar, on_delete=models.CASCADE, related_name="filter")
    is_cancelled = models.BooleanField("drop cancelled", default=True)
    is_draft = models.BooleanField("drop drafts", default=False)
    is_meeting = models.BooleanField(
        "drop meetings", default=False, help_text="Keep plain appointments only."
    )
    sensitivity = models.CharField(
        "drop sensitivities",
        max_length=100,
        blank=True,
        validators=[CommaListOf(SENSITIVITIES, "sensitivity")],
        help_text="Comma list of Normal, Personal, Private, Confidential.",
    )
    importance = models.CharField(
        "drop importances",
        max_length=100,
        blank=True,
        validators=[CommaListOf(IMPORTANCES, "importance")],
        help_text="Comma list of Low, Normal, High.",
    )
    subject = models.CharField(
        "drop subjects",
        max_length=500,
        blank=True,
        help_text="Comma list of case-insensitive glob patterns, e.g. *##*",
    )
    free_busy = models.CharField(
        "drop free/busy",
        max_length=100,
        blank=True,
        validators=[CommaListOf(FREE_BUSY, "free/busy status")],
        help_text="Comma list of Free, Tentative, Busy, OOF, WorkingElsewhere.",
    )
    mask_sensitivity = models.CharField(
        "mask sensitivities",
        max_length=100,
        blank=True,
        default=PRIVATE_SENSITIVITIES,
        validators=[CommaListOf(SENSITIVITIES, "sensitivity")],
        help_text="Keep these events but show 'Private' instead of their subject, without "
        "organizer or description.",
    )
    detail_level = models.CharField(
        max_length=20,
        choices=DetailLevel.choices,
        default=DetailLevel.FULL,
    )

    class Meta:
        verbose_name = "filters and privacy"
        verbose_name_plural = "filters and privacy"

    def __str__(self) -> str:
        return f"filters of {self.calendar_id}"


class Alarm(models.Model):
    """A display alarm: when an event appears (start) or disappears (end) on a screen."""

    class Edge(models.TextChoices):
        START = "start", "Appears (start)"
        END = "end", "Disappears (end)"

    class Related(models.TextChoices):
        EVENT_START = "event-start", "event start"
        EVENT_END = "event-end", "event end"
        DAY_START = "day-start", "day start (00:00:00)"
        DAY_END = "day-end", "day end (23:59:59)"

    calendar = models.ForeignKey(Calendar, on_delete=models.CASCADE, related_name="alarms")
    edge = models.CharField(max_length=5, choices=Edge.choices)
    related = models.CharField(max_length=20, choices=Related.choices)
    offset = models.IntegerField(
        default=0,
        validators=[MinValueValidator(-7 * 86400), MaxValueValidator(7 * 86400)],
        help_text="Seconds after (positive) or before (negative) the related instant.",
    )

    class Meta:
        ordering = ["calendar", "edge"]
        constraints = [
            models.UniqueConstraint(fields=["calendar", "edge"], name="alarm_once_per_edge"),
        ]

    DEFAULTS = {"start": ("event-start", 0), "end": ("event-end", 0)}

    def __str__(self) -> str:
        return f"{self.edge}: {self.related} {self.offset:+d}s"

    @property
    def is_default(self) -> bool:
        """Default alarms emit no VALARM (SPEC)."""
        return (self.related, self.offset) == self.DEFAULTS[self.edge]
