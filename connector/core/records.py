"""Plain data that flows between the pipeline's steps.

A source turns Exchange (EWS or Graph) or an iCalendar file into EventRecords;
nothing after the source knows where they came from.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Window:
    """Half-open interval [start, end) in UTC, aware datetimes."""

    start: dt.datetime
    end: dt.datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("window bounds must be aware datetimes")
        if self.end <= self.start:
            raise ValueError("window end must be after its start")


@dataclass(frozen=True)
class EventRecord:
    """One occurrence of an event in one resource's calendar.

    Timed events: ``start``/``end`` are aware UTC datetimes. All-day events:
    ``all_day`` is True and ``start``/``end`` are the local midnights as
    ``datetime.date`` values (end exclusive), as Exchange stores them.
    """

    uid: str  # the series' iCalendar UID (Exchange UID / iCalUId), stable across refreshes
    occurrence_id: str  # identity of this occurrence within the series ('' for single events)
    resource: str  # the mailbox (or ICS URL) it came from
    subject: str
    start: dt.datetime | dt.date
    end: dt.datetime | dt.date
    all_day: bool = False
    location: str = ""
    organizer_name: str = ""
    organizer_email: str = ""
    sensitivity: str = "Normal"  # Normal | Personal | Private | Confidential
    importance: str = "Normal"  # Low | Normal | High
    free_busy: str = "Busy"  # Free | Tentative | Busy | OOF | WorkingElsewhere | NoData
    is_cancelled: bool = False
    is_draft: bool = False
    is_meeting: bool = False
    is_recurring: bool = False
    categories: tuple[str, ...] = ()
    body: str | None = None  # None when not asked for
    last_modified: dt.datetime | None = None
    extra: tuple[tuple[str, str], ...] = field(default=())

    @property
    def key(self) -> str:
        """Unique within one resource: series uid plus occurrence."""
        return f"{self.uid}/{self.occurrence_id}" if self.occurrence_id else self.uid
