"""Which events a calendar keeps, and how much of each it shows.

Filters run in the SPEC's order (the PHP connector's parameters first, then
the extensions); the first that matches drops the event and is named in its
``Decision`` so that the console can say why an event is missing. What is
kept then goes through ``redact()``: ``maskSensitivity`` and ``detailLevel``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from connector.core.records import EventRecord
from connector.validators import split_list

if TYPE_CHECKING:
    from connector.models import Calendar

MASKED_SUBJECT = "Private"
FULL, LIMITED, AVAILABILITY = "full", "limited", "availability"

# Outlook's "availability only" publishing shows just these words.
AVAILABILITY_SUBJECTS = {"Tentative": "Tentative", "OOF": "Out of office"}
AVAILABILITY_DEFAULT = "Busy"


def _lowered(raw: str) -> frozenset[str]:
    return frozenset(item.lower() for item in split_list(raw))


@dataclass(frozen=True)
class FilterRules:
    """A calendar's filters as plain data (defaults: the Filter model's, SPEC's table)."""

    drop_cancelled: bool = True
    drop_draft: bool = False
    drop_meeting: bool = False
    drop_sensitivity: frozenset[str] = field(default_factory=frozenset)  # lower-cased
    drop_importance: frozenset[str] = field(default_factory=frozenset)
    drop_subject: tuple[str, ...] = ()  # lower-cased glob patterns
    drop_free_busy: frozenset[str] = field(default_factory=frozenset)
    mask_sensitivity: frozenset[str] = field(default_factory=frozenset)
    detail_level: str = FULL

    @classmethod
    def from_lists(
        cls,
        *,
        drop_cancelled: bool = True,
        drop_draft: bool = False,
        drop_meeting: bool = False,
        sensitivity: str = "",
        importance: str = "",
        subject: str = "",
        free_busy: str = "",
        mask_sensitivity: str = "",
        detail_level: str = FULL,
    ) -> FilterRules:
        """Rules from the comma lists stored on the Filter model and in configuration.xml."""
        return cls(
            drop_cancelled=drop_cancelled,
            drop_draft=drop_draft,
            drop_meeting=drop_meeting,
            drop_sensitivity=_lowered(sensitivity),
            drop_importance=_lowered(importance),
            drop_subject=tuple(pattern.lower() for pattern in split_list(subject)),
            drop_free_busy=_lowered(free_busy),
            mask_sensitivity=_lowered(mask_sensitivity),
            detail_level=detail_level or FULL,
        )

    @classmethod
    def for_calendar(cls, calendar: Calendar) -> FilterRules:
        """The rules of a calendar; one without a Filter row gets the model's defaults."""
        from connector.models import Filter

        try:
            row = calendar.filter
        except Filter.DoesNotExist:
            row = Filter(calendar=calendar)
        return cls.from_lists(
            drop_cancelled=row.is_cancelled,
            drop_draft=row.is_draft,
            drop_meeting=row.is_meeting,
            sensitivity=row.sensitivity,
            importance=row.importance,
            subject=row.subject,
            free_busy=row.free_busy,
            mask_sensitivity=row.mask_sensitivity,
            detail_level=row.detail_level,
        )


@dataclass(frozen=True)
class Decision:
    """What the filters did with one event: kept, or dropped by which filter and why."""

    record: EventRecord
    dropped_by: str = ""  # the configuration.xml parameter name, e.g. "filterSensitivity"
    reason: str = ""

    @property
    def kept(self) -> bool:
        return not self.dropped_by


# Each filter: (name as in configuration.xml, test returning a reason when it drops).
Check = Callable[[EventRecord, FilterRules], str]


def _cancelled(record: EventRecord, rules: FilterRules) -> str:
    return "cancelled" if rules.drop_cancelled and record.is_cancelled else ""


def _draft(record: EventRecord, rules: FilterRules) -> str:
    return "draft" if rules.drop_draft and record.is_draft else ""


def _meeting(record: EventRecord, rules: FilterRules) -> str:
    return "a meeting" if rules.drop_meeting and record.is_meeting else ""


def _sensitivity(record: EventRecord, rules: FilterRules) -> str:
    if record.sensitivity.lower() in rules.drop_sensitivity:
        return f"sensitivity {record.sensitivity}"
    return ""


def _importance(record: EventRecord, rules: FilterRules) -> str:
    if record.importance.lower() in rules.drop_importance:
        return f"importance {record.importance}"
    return ""


def _subject(record: EventRecord, rules: FilterRules) -> str:
    subject = record.subject.lower()
    for pattern in rules.drop_subject:
        if fnmatch.fnmatchcase(subject, pattern):
            return f"subject matches {pattern}"
    return ""


def _free_busy(record: EventRecord, rules: FilterRules) -> str:
    if record.free_busy.lower() in rules.drop_free_busy:
        return f"shown as {record.free_busy}"
    return ""


FILTERS: list[tuple[str, Check]] = [
    ("filterIsCancelled", _cancelled),
    ("filterIsDraft", _draft),
    ("filterIsMeeting", _meeting),
    ("filterSensitivity", _sensitivity),
    ("filterImportance", _importance),
    ("filterSubject", _subject),
    ("filterFreeBusy", _free_busy),
]


def decide(record: EventRecord, rules: FilterRules) -> Decision:
    for name, check in FILTERS:
        reason = check(record, rules)
        if reason:
            return Decision(record, dropped_by=name, reason=reason)
    return Decision(record)


def apply_filters(records: Iterable[EventRecord], rules: FilterRules) -> list[Decision]:
    """One decision per record, in the order given."""
    return [decide(record, rules) for record in records]


def is_masked(record: EventRecord, rules: FilterRules) -> bool:
    return record.sensitivity.lower() in rules.mask_sensitivity


def redact(record: EventRecord, rules: FilterRules) -> EventRecord:
    """What a kept event may show: maskSensitivity, then detailLevel."""
    if rules.detail_level == AVAILABILITY:
        # Nothing but the time and how busy the room is (Outlook's "availability only").
        return replace(
            record,
            subject=AVAILABILITY_SUBJECTS.get(record.free_busy, AVAILABILITY_DEFAULT),
            location="",
            organizer_name="",
            organizer_email="",
            categories=(),
            body=None,
        )
    if is_masked(record, rules):
        record = replace(
            record, subject=MASKED_SUBJECT, organizer_name="", organizer_email="", body=None
        )
    if rules.detail_level == LIMITED:
        # "Limited details": time, subject, location and organizer; never the body.
        record = replace(record, categories=(), body=None)
    return record
