"""Keep background work in step with the configuration.

- One django-q2 Schedule, created after ``migrate`` and checked again when a
  worker starts, runs ``connector.tasks.dispatch_refreshes`` every minute.
- Each calendar's own schedule is its ``RefreshStatus.next_refresh`` on a grid
  of its ``cachePersistence``: created with the calendar (due at once), reset
  when the calendar, its resources, filters or alarms change (so the feed
  shows the change within a minute), deleted with it.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django_q.models import Schedule
from django_q.signals import post_spawn

from connector.models import Alarm, Calendar, Filter, RefreshStatus, Resource

log = logging.getLogger(__name__)

DISPATCH = "Refresh due calendars"
DISPATCH_FUNC = "connector.tasks.dispatch_refreshes"


def ensure_schedules(**kwargs: Any) -> None:
    """Create (or repair) the dispatcher's Schedule; leaves its next run alone."""
    schedule, created = Schedule.objects.get_or_create(
        name=DISPATCH,
        defaults={
            "func": DISPATCH_FUNC,
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
            "repeats": -1,
        },
    )
    wanted = {"func": DISPATCH_FUNC, "schedule_type": Schedule.MINUTES, "minutes": 1}
    wrong = {key: value for key, value in wanted.items() if getattr(schedule, key) != value}
    if wrong or schedule.repeats != -1:
        for key, value in wrong.items():
            setattr(schedule, key, value)
        schedule.repeats = -1
        schedule.save()
        log.info("repaired the schedule %r", DISPATCH)
    # The daily secret-expiry mail (connector.services.expiry) lives beside the dispatcher.
    from connector.services.expiry import ensure_schedule as ensure_expiry_schedule

    ensure_expiry_schedule()


def mark_due(calendar_pk: int) -> None:
    """Refresh this calendar at the next dispatch (its configuration changed).

    Only an UPDATE: a calendar without a RefreshStatus yet is due anyway, and
    creating one here while the calendar is being deleted would break its cascade.
    """
    RefreshStatus.objects.filter(calendar_id=calendar_pk).update(next_refresh=None)


@receiver(post_save, sender=Calendar, dispatch_uid="schedules.calendar_saved")
def _calendar_saved(sender: type, instance: Calendar, raw: bool = False, **kwargs: Any) -> None:
    if not raw:
        mark_due(instance.pk)


@receiver(post_save, sender=Resource, dispatch_uid="schedules.resource_saved")
@receiver(post_delete, sender=Resource, dispatch_uid="schedules.resource_deleted")
@receiver(post_save, sender=Filter, dispatch_uid="schedules.filter_saved")
@receiver(post_save, sender=Alarm, dispatch_uid="schedules.alarm_saved")
@receiver(post_delete, sender=Alarm, dispatch_uid="schedules.alarm_deleted")
def _part_changed(sender: type, instance: Any, raw: bool = False, **kwargs: Any) -> None:
    if not raw:
        mark_due(instance.calendar_id)


@receiver(post_spawn, dispatch_uid="schedules.worker_started")
def _worker_started(sender: Any, proc_name: str = "", **kwargs: Any) -> None:
    """Reconcile at worker start: a database restored or migrated elsewhere still refreshes."""
    from connector.tasks import heartbeat

    try:
        ensure_schedules()
        heartbeat()
    except Exception:
        log.exception("could not check the refresh schedule at worker start")
