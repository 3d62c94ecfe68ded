"""Local time by default: without TIME_ZONE, calendars follow the host's zone, as the PHP
connector followed its server's; where that is UTC only by default, the site says so."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tests.helpers_process import clean_env, manage

NEW_YORK = ZoneInfo("America/New_York")

CONFIGURATION = """<?xml version="1.0" encoding="UTF-8"?>
<fcc:configuration xmlns:fcc="urn:ews-calendar:c" xmlns:scc="urn:ews-calendar:c">
  <fcc:servers>
    <scc:server id="files" type="ics"><scc:baseuri>{folder}</scc:baseuri></scc:server>
  </fcc:servers>
  <fcc:calendars>
    <scc:calendar id="lobby" server="url(#files)">
      <param name="resource">room.ics</param>
      <param name="requestWindow">366</param>
      <param name="startRelated">day-start</param>
    </scc:calendar>
  </fcc:calendars>
</fcc:configuration>
"""

EVENT = """BEGIN:VEVENT
UID:{uid}
DTSTAMP:20260101T000000Z
DTSTART:{start}
DTEND:{end}
SUMMARY:{uid}
END:VEVENT
"""

# Runs in the site's own process: the window and the alarm triggers of "lobby".
SHOW = """
import json
from connector.models import Calendar
from connector.pipeline.build import build_calendar
from django.conf import settings
calendar = Calendar.objects.get(calendar_id="lobby")
result = build_calendar(calendar)
print(json.dumps({
    "time_zone": settings.TIME_ZONE,
    "window_start": result.window.start.isoformat(),
    "triggers": {
        event.record.subject: [alarm.instant.isoformat() for alarm in event.alarms]
        for event in result.events
    },
}))
"""


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def test_without_time_zone_the_hosts_zone_gives_day_start_and_the_window(tmp_path: Path) -> None:
    today = dt.datetime.now(NEW_YORK).date()
    winter = next(
        today + dt.timedelta(days=n)
        for n in range(1, 366)
        if (today + dt.timedelta(days=n)).month == 1
    )
    summer = next(
        today + dt.timedelta(days=n)
        for n in range(1, 366)
        if (today + dt.timedelta(days=n)).month == 7
    )
    events = ""
    for uid, day in (("winter", winter), ("summer", summer)):
        start = dt.datetime.combine(day, dt.time(9), tzinfo=NEW_YORK)
        events += EVENT.format(uid=uid, start=_utc(start), end=_utc(start + dt.timedelta(hours=1)))
    (tmp_path / "room.ics").write_text(
        "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//test//EN\n" + events + "END:VCALENDAR\n"
    )
    (tmp_path / "configuration.xml").write_text(CONFIGURATION.format(folder=tmp_path))
    env = clean_env(tmp_path, TZ="America/New_York")
    env.pop("TIME_ZONE", None)
    for args in (("migrate", "--noinput"), ("import_config", str(tmp_path / "configuration.xml"))):
        done = manage(env, *args)
        assert done.returncode == 0, done.stderr
    shown = manage(env, "shell", "-c", SHOW)
    assert shown.returncode == 0, shown.stderr
    values = json.loads(shown.stdout.strip().splitlines()[-1])

    assert values["time_zone"] == "America/New_York"
    window_start = dt.datetime.fromisoformat(values["window_start"])
    assert window_start.astimezone(NEW_YORK).time() == dt.time(0, 0)  # local midnight
    assert window_start.astimezone(NEW_YORK).date() == dt.datetime.now(NEW_YORK).date()
    [winter_trigger] = values["triggers"]["winter"]
    [summer_trigger] = values["triggers"]["summer"]
    assert winter_trigger == f"{winter.isoformat()}T05:00:00+00:00"  # EST: UTC-5
    assert summer_trigger == f"{summer.isoformat()}T04:00:00+00:00"  # EDT: UTC-4


def test_check_warns_when_calendars_follow_utc_only_by_default(tmp_path: Path) -> None:
    env = clean_env(tmp_path, TZ="UTC")
    env.pop("TIME_ZONE", None)
    checked = manage(env, "check")
    assert checked.returncode == 0, checked.stderr
    assert "connector.W004" in checked.stderr and "TIME_ZONE" in checked.stderr
    local = manage(clean_env(tmp_path, TZ="Europe/Paris"), "check")
    assert "W004" not in local.stderr
    named = manage(clean_env(tmp_path, TZ="UTC", TIME_ZONE="UTC"), "check")
    assert "W004" not in named.stderr  # UTC chosen on purpose is no surprise


@pytest.mark.django_db
def test_status_page_says_which_zone_is_in_force(settings, admin_user: User) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(admin_user)
    settings.TIME_ZONE_UTC_BY_DEFAULT = True
    settings.TIME_ZONE_SOURCE = "the system's zone"
    page = client.get("/status/").content.decode()
    assert "UTC by default" in page and "set TIME_ZONE" in page
    settings.TIME_ZONE = "America/New_York"
    settings.TIME_ZONE_SOURCE = "TZ"
    settings.TIME_ZONE_UTC_BY_DEFAULT = False
    page = client.get("/status/").content.decode()
    assert "America/New_York" in page and "from the TZ variable" in page
    assert "UTC by default" not in page
