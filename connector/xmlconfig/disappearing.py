"""The feeds an import would remove: what players would lose, for the preview.

A calendar the file no longer names is removed with its feed; a player still
fetching it would then get 404 and its screen goes blank. The preview shows
each such feed in red with its path, so that nobody removes a feed in use by
surprise. Each comes with its players' last fetch, as the feed recorded it
(``connector.services.fetches``): "players fetched /ical/lobby.ics 2 minutes
ago from 10.0.0.5 (status 200)", or "never fetched".
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.urls import reverse
from django.utils import timezone

from connector.services.fetches import last_fetches
from connector.xmlconfig.plan import Plan

NEVER_FETCHED = "never fetched"


@dataclass(frozen=True)
class Disappearing:
    calendar_id: str
    path: str  # /ical/<id>.ics
    last_fetch: str  # "players fetched /ical/lobby.ics 2 minutes ago …" or "never fetched"
    fetched: bool

    def __str__(self) -> str:
        return f"{self.path}: {self.last_fetch}"


def disappearing_feeds(plan: Plan, now: dt.datetime | None = None) -> list[Disappearing]:
    """The feeds of the calendars the plan removes, in id order, with their last fetch."""
    removed = sorted(calendar.calendar_id for calendar in plan.calendars_to_remove)
    if not removed:
        return []
    now = now or timezone.now()
    fetches = last_fetches(removed)
    feeds = []
    for calendar_id in removed:
        newest = fetches.get(calendar_id) or []
        feeds.append(
            Disappearing(
                calendar_id=calendar_id,
                path=reverse("feed", kwargs={"calendar_id": calendar_id}),
                last_fetch=newest[0].describe(now) if newest else NEVER_FETCHED,
                fetched=bool(newest),
            )
        )
    return feeds
