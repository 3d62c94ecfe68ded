"""Filters drop events in the SPEC's order and say which one did; masks and detail levels."""

from __future__ import annotations

import pytest

from connector.pipeline.filters import FilterRules, apply_filters, decide, redact
from tests.fixtures.feed import make_record


def test_cancelled_events_are_dropped_by_default() -> None:
    decision = decide(make_record(is_cancelled=True), FilterRules())
    assert not decision.kept
    assert decision.dropped_by == "filterIsCancelled"


def test_cancelled_events_are_kept_when_filter_is_off() -> None:
    assert decide(make_record(is_cancelled=True), FilterRules(drop_cancelled=False)).kept


def test_drafts_are_kept_by_default_and_dropped_on_request() -> None:
    draft = make_record(is_draft=True)
    assert decide(draft, FilterRules()).kept
    assert decide(draft, FilterRules(drop_draft=True)).dropped_by == "filterIsDraft"


def test_filter_is_meeting_keeps_plain_appointments() -> None:
    rules = FilterRules(drop_meeting=True)
    assert decide(make_record(is_meeting=True), rules).dropped_by == "filterIsMeeting"
    assert decide(make_record(is_meeting=False), rules).kept


def test_filter_sensitivity_drops_listed_sensitivities_case_insensitively() -> None:
    rules = FilterRules.from_lists(sensitivity="private, CONFIDENTIAL")
    assert decide(make_record(sensitivity="Private"), rules).dropped_by == "filterSensitivity"
    assert decide(make_record(sensitivity="Confidential"), rules).reason == (
        "sensitivity Confidential"
    )
    assert decide(make_record(sensitivity="Personal"), rules).kept
    assert decide(make_record(sensitivity="Normal"), rules).kept


def test_filter_importance_drops_listed_importances() -> None:
    rules = FilterRules.from_lists(importance="Low")
    assert decide(make_record(importance="Low"), rules).dropped_by == "filterImportance"
    assert decide(make_record(importance="High"), rules).kept


@pytest.mark.parametrize(
    ("subject", "dropped"),
    [
        ("Planning ## hidden", True),
        ("PLANNING ## HIDDEN", True),
        ("Planning # one", False),
        ("Lunch", True),
        ("lunch break", False),
    ],
)
def test_filter_subject_drops_case_insensitive_globs(subject: str, dropped: bool) -> None:
    rules = FilterRules.from_lists(subject="*##*, LUNCH")
    decision = decide(make_record(subject), rules)
    assert decision.kept is not dropped
    if dropped:
        assert decision.dropped_by == "filterSubject"


def test_filter_free_busy_drops_listed_statuses() -> None:
    rules = FilterRules.from_lists(free_busy="Free,WorkingElsewhere")
    assert decide(make_record(free_busy="Free"), rules).dropped_by == "filterFreeBusy"
    assert decide(make_record(free_busy="WorkingElsewhere"), rules).reason == (
        "shown as WorkingElsewhere"
    )
    assert decide(make_record(free_busy="Busy"), rules).kept


def test_first_matching_filter_in_spec_order_is_named() -> None:
    # Cancelled, draft, a meeting, private, low importance, ## subject and free all at once:
    # the SPEC's order says filterIsCancelled wins, then each next one when the earlier is off.
    record = make_record(
        "x ## y",
        is_cancelled=True,
        is_draft=True,
        is_meeting=True,
        sensitivity="Private",
        importance="Low",
        free_busy="Free",
    )
    everything = dict(
        sensitivity="Private",
        importance="Low",
        subject="*##*",
        free_busy="Free",
    )
    order = []
    flags = {"drop_cancelled": True, "drop_draft": True, "drop_meeting": True}
    lists = dict(everything)
    for _ in range(7):
        decision = decide(record, FilterRules.from_lists(**flags, **lists))
        if decision.kept:
            break
        order.append(decision.dropped_by)
        name = decision.dropped_by
        if name == "filterIsCancelled":
            flags["drop_cancelled"] = False
        elif name == "filterIsDraft":
            flags["drop_draft"] = False
        elif name == "filterIsMeeting":
            flags["drop_meeting"] = False
        else:
            key = {
                "filterSensitivity": "sensitivity",
                "filterImportance": "importance",
                "filterSubject": "subject",
                "filterFreeBusy": "free_busy",
            }[name]
            lists[key] = ""
    assert order == [
        "filterIsCancelled",
        "filterIsDraft",
        "filterIsMeeting",
        "filterSensitivity",
        "filterImportance",
        "filterSubject",
        "filterFreeBusy",
    ]


def test_apply_filters_gives_one_decision_per_record_in_order() -> None:
    records = [make_record("a"), make_record("b", is_cancelled=True), make_record("c")]
    decisions = apply_filters(records, FilterRules())
    assert [d.record.subject for d in decisions] == ["a", "b", "c"]
    assert [d.kept for d in decisions] == [True, False, True]


def test_mask_sensitivity_hides_subject_organizer_and_body_but_keeps_the_event() -> None:
    rules = FilterRules.from_lists(mask_sensitivity="Personal,Private,Confidential")
    record = make_record("Doctor", sensitivity="Personal", body="see you", location="Room A")
    assert decide(record, rules).kept
    shown = redact(record, rules)
    assert shown.subject == "Private"
    assert shown.organizer_email == "" and shown.organizer_name == ""
    assert shown.body is None
    assert shown.location == "Room A"
    assert (shown.start, shown.end) == (record.start, record.end)
    assert redact(make_record("Open", sensitivity="Normal"), rules).subject == "Open"


def test_limited_detail_keeps_subject_and_organizer_only() -> None:
    rules = FilterRules.from_lists(detail_level="limited")
    shown = redact(make_record("Sync", categories=("Blue",), body="agenda"), rules)
    assert shown.subject == "Sync"
    assert shown.organizer_email == "alice@contoso.com"
    assert shown.categories == ()
    assert shown.body is None


@pytest.mark.parametrize(
    ("free_busy", "subject"),
    [
        ("Busy", "Busy"),
        ("Tentative", "Tentative"),
        ("OOF", "Out of office"),
        ("WorkingElsewhere", "Busy"),
        ("Free", "Busy"),
    ],
)
def test_availability_detail_shows_only_busy_tentative_or_out_of_office(
    free_busy: str, subject: str
) -> None:
    rules = FilterRules.from_lists(detail_level="availability")
    shown = redact(
        make_record("Secret merger", free_busy=free_busy, location="CEO office", body="x"), rules
    )
    assert shown.subject == subject
    assert shown.organizer_email == "" and shown.location == "" and shown.body is None
