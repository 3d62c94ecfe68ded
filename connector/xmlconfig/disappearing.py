"""The feeds an import would remove: what players would lose, for the preview.

A calendar the file no longer names is removed with its feed; a player still
fetching it would then get 404 and its screen goes blank. The preview shows
each such feed in red with its path, so that nobody removes a feed in use by
surprise.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import reverse

from connector.xmlconfig.plan import Plan


@dataclass(frozen=True)
class Disappearing:
    calendar_id: str
    path: str  # /ical/<id>.ics

    def __str__(self) -> str:
        return self.path


def disappearing_feeds(plan: Plan) -> list[Disappearing]:
    """The feeds of the calendars the plan removes, in id order."""
    return [
        Disappearing(
            calendar_id=calendar.calendar_id,
            path=reverse("feed", kwargs={"calendar_id": calendar.calendar_id}),
        )
        for calendar in sorted(plan.calendars_to_remove, key=lambda c: c.calendar_id)
    ]
