"""The rooms and events the fake Exchange (EWS and Graph alike) holds.

Events are built relative to today so that every run sees them in its
window. Recurring series are stored expanded, as Exchange's calendar view
returns them: one FakeEvent per occurrence, sharing the series' uid.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from dataclasses import dataclass, field, replace
from zoneinfo import ZoneInfo

UTC = dt.UTC
_ids = itertools.count(1)


@dataclass
class FakeEvent:
    subject: str
    start: dt.datetime | dt.date  # aware UTC datetime, or a date when all_day
    end: dt.datetime | dt.date
    uid: str = ""  # iCalendar UID of the series (EWS UID, Graph iCalUId)
    all_day: bool = False
    location: str = ""
    organizer_name: str = "Alice Organizer"
    organizer_email: str = "alice@contoso.com"
    sensitivity: str = "Normal"  # Normal | Personal | Private | Confidential
    importance: str = "Normal"  # Low | Normal | High
    free_busy: str = "Busy"  # Free | Tentative | Busy | OOF | WorkingElsewhere
    is_cancelled: bool = False
    is_draft: bool = False
    is_meeting: bool = True
    categories: tuple[str, ...] = ()
    body: str = ""
    series_start: dt.datetime | dt.date | None = None  # set on occurrences: original start
    item_id: str = ""
    change_key: str = ""
    last_modified: dt.datetime = field(
        default_factory=lambda: dt.datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    )

    def __post_init__(self) -> None:
        number = next(_ids)
        if not self.uid:
            self.uid = "040000008200E00074C5B7101A82E00800000000" + f"{number:032X}"
        if not self.item_id:
            # Unique per item: one meeting booked in two rooms is two items (two ids).
            digest = hashlib.sha1(f"{self.uid}{self.start}{number}".encode()).hexdigest()
            self.item_id = "AAMkAD" + digest + "AAA="
        if not self.change_key:
            self.change_key = "DwAAABYAAA" + f"{number:08d}"

    @property
    def is_recurring(self) -> bool:
        return self.series_start is not None

    @property
    def occurrence_id(self) -> str:
        if self.series_start is None:
            return ""
        return self.series_start.isoformat()


def series(first: FakeEvent, *, days: list[int]) -> list[FakeEvent]:
    """Occurrences of a daily-ish series: ``first`` shifted by each number of days."""
    occurrences = []
    for offset in days:
        delta = dt.timedelta(days=offset)
        start = first.start + delta
        occurrences.append(
            replace(
                first,
                start=start,
                end=first.end + delta,
                series_start=start,
                item_id="",
                change_key="",
            )
        )
    return occurrences


def _at(day: dt.date, hour: int, minute: int, tz: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=tz).astimezone(UTC)


def build_rooms(today: dt.date, tz: str = "Europe/Paris") -> dict[str, list[FakeEvent]]:
    """The default rooms: room-a has every kind of event, room-b a few, big-hall many."""
    zone = ZoneInfo(tz)
    d = [today + dt.timedelta(days=n) for n in range(0, 14)]
    shared_uid = "040000008200E00074C5B7101A82E008000000005348415245440000000000000000000000"

    room_a = [
        FakeEvent(
            "Weekly sync",
            _at(d[0], 9, 0, zone),
            _at(d[0], 10, 0, zone),
            location="Room A",
            categories=("Blue category",),
        ),
        FakeEvent(
            "Board meeting",
            _at(d[0], 14, 0, zone),
            _at(d[0], 16, 30, zone),
            location="Room A",
            importance="High",
            uid=shared_uid,
            organizer_name="Bob Boss",
            organizer_email="bob@contoso.com",
        ),
        FakeEvent(
            "Private chat", _at(d[1], 11, 0, zone), _at(d[1], 11, 30, zone), sensitivity="Private"
        ),
        FakeEvent(
            "Doctor",
            _at(d[1], 15, 0, zone),
            _at(d[1], 16, 0, zone),
            sensitivity="Personal",
            free_busy="OOF",
            is_meeting=False,
        ),
        FakeEvent(
            "Merger talks",
            _at(d[2], 10, 0, zone),
            _at(d[2], 12, 0, zone),
            sensitivity="Confidential",
            importance="High",
        ),
        FakeEvent(
            "Cancelled review",
            _at(d[2], 13, 0, zone),
            _at(d[2], 14, 0, zone),
            is_cancelled=True,
            free_busy="Free",
        ),
        FakeEvent(
            "Draft agenda",
            _at(d[3], 9, 0, zone),
            _at(d[3], 9, 30, zone),
            is_draft=True,
            is_meeting=False,
        ),
        FakeEvent(
            'Coffee ☕ with Zoë & Jürgen; agenda: "Q3, Q4" <draft>',
            _at(d[3], 10, 0, zone),
            _at(d[3], 10, 45, zone),
            location="Salle Éiffel, 2ᵉ étage",
            importance="Low",
            free_busy="Tentative",
            body="Line one\nLine two; with, punctuation \\ and ünïcödé",
            categories=("Café", "Team, Alpha"),
        ),
        FakeEvent(
            "Company holiday",
            d[4],
            d[5],
            all_day=True,
            free_busy="Free",
            is_meeting=False,
            organizer_name="",
            organizer_email="",
        ),
        FakeEvent("Offsite", d[5], d[7], all_day=True, free_busy="WorkingElsewhere"),
        FakeEvent(
            "Late session", _at(d[6], 22, 30, zone), _at(d[7], 1, 0, zone), location="Room A"
        ),
        FakeEvent("Planning ## hidden", _at(d[4], 8, 0, zone), _at(d[4], 8, 30, zone)),
    ]
    room_a += series(
        FakeEvent(
            "Daily stand-up",
            _at(d[0], 8, 30, zone),
            _at(d[0], 8, 45, zone),
            location="Room A",
            is_meeting=True,
        ),
        days=[0, 1, 2, 3, 4, 7, 8, 9],
    )
    room_b = [
        FakeEvent(
            "Board meeting",
            _at(d[0], 14, 0, zone),
            _at(d[0], 16, 30, zone),
            location="Room B",
            importance="High",
            uid=shared_uid,
            organizer_name="Bob Boss",
            organizer_email="bob@contoso.com",
        ),
        FakeEvent("Interview", _at(d[1], 10, 0, zone), _at(d[1], 11, 0, zone), location="Room B"),
    ]
    room_b += series(
        FakeEvent(
            "Yoga",
            _at(d[0], 12, 0, zone),
            _at(d[0], 13, 0, zone),
            location="Room B",
            is_meeting=False,
        ),
        days=[0, 2, 4, 6],
    )
    big_hall = series(
        FakeEvent(
            "Training block", _at(d[0], 7, 0, zone), _at(d[0], 7, 50, zone), location="Big hall"
        ),
        days=list(range(0, 14)),
    )
    for hour in range(8, 18):
        big_hall += series(
            FakeEvent(
                f"Session {hour:02d}h",
                _at(d[0], hour, 0, zone),
                _at(d[0], hour, 50, zone),
                location="Big hall",
            ),
            days=list(range(0, 7)),
        )
    return {
        "room-a@contoso.com": room_a,
        "room-b@contoso.com": room_b,
        "big-hall@contoso.com": big_hall,
        "empty-room@contoso.com": [],
    }


def overlapping(events: list[FakeEvent], start: dt.datetime, end: dt.datetime) -> list[FakeEvent]:
    """Events of a calendar view [start, end): those that overlap it, sorted by start."""

    def bounds(event: FakeEvent) -> tuple[dt.datetime, dt.datetime]:
        if event.all_day:
            # Exchange compares all-day events in the mailbox's zone; UTC is close enough here.
            s = dt.datetime.combine(event.start, dt.time(), tzinfo=UTC)  # type: ignore[arg-type]
            e = dt.datetime.combine(event.end, dt.time(), tzinfo=UTC)  # type: ignore[arg-type]
            return s, e
        return event.start, event.end  # type: ignore[return-value]

    found = [event for event in events if bounds(event)[0] < end and bounds(event)[1] > start]
    return sorted(found, key=lambda event: bounds(event)[0])
