"""Template tags of the fetch record: ``{% fetches_of calendar_id as fetches %}``.

The calendar's admin page includes admin/connector/calendar/_fetches.html,
which reads the record through this tag, so that the page needs no view code.
"""

from __future__ import annotations

from django import template

from connector.services.fetches import FetchRecord, last_fetches

register = template.Library()


@register.simple_tag
def fetches_of(calendar_id: str) -> list[FetchRecord]:
    """The newest player fetches of a calendar, newest first ([] = never fetched)."""
    if not calendar_id:
        return []
    return last_fetches([calendar_id])[calendar_id]
