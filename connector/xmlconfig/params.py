"""The calendar <param>s of configuration.xml: names, where each is stored, its default.

One table read by the reader (file → specs), the planner (spec ↔ database) and
the writer (database → file), so the three cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from connector.models import Alarm, Filter
from connector.models.calendars import FREE_BUSY, IMPORTANCES, SENSITIVITIES

Kind = Literal["text", "secret", "int", "bool", "list", "choice"]
Section = Literal["resource", "calendar", "filter", "alarm"]


@dataclass(frozen=True)
class Param:
    name: str  # the spelling written on export; matched case-insensitively on import
    section: Section
    field: str  # model field (calendar, filter); "start.related" etc. for alarms
    kind: Kind
    choices: tuple[str, ...] = ()
    what: str = ""  # for list messages: "sensitivity"

    @property
    def key(self) -> str:
        return self.name.lower()


# In the order of the SPEC's table, then the extensions; the export writes them so.
PARAMS: tuple[Param, ...] = (
    Param("resource", "resource", "address", "text"),
    Param("requestWindow", "calendar", "request_window", "int"),
    Param("cachePersistence", "calendar", "cache_persistence", "int"),
    Param("sendCacheOnServerError", "calendar", "send_cache_on_server_error", "bool"),
    Param("username", "calendar", "username", "text"),
    Param("password", "calendar", "password", "secret"),
    Param("label", "calendar", "label", "text"),
    Param("startRelated", "alarm", "start.related", "choice", tuple(Alarm.Related.values)),
    Param("startOffset", "alarm", "start.offset", "int"),
    Param("endRelated", "alarm", "end.related", "choice", tuple(Alarm.Related.values)),
    Param("endOffset", "alarm", "end.offset", "int"),
    Param("filterIsCancelled", "filter", "is_cancelled", "bool"),
    Param("filterIsDraft", "filter", "is_draft", "bool"),
    Param("filterIsMeeting", "filter", "is_meeting", "bool"),
    Param(
        "filterSensitivity", "filter", "sensitivity", "list", tuple(SENSITIVITIES), "sensitivity"
    ),
    Param("filterImportance", "filter", "importance", "list", tuple(IMPORTANCES), "importance"),
    Param("timezone", "calendar", "timezone", "text"),
    Param("filterSubject", "filter", "subject", "text"),
    Param("filterFreeBusy", "filter", "free_busy", "list", tuple(FREE_BUSY), "free/busy status"),
    Param(
        "maskSensitivity", "filter", "mask_sensitivity", "list", tuple(SENSITIVITIES), "sensitivity"
    ),
    Param("detailLevel", "filter", "detail_level", "choice", tuple(Filter.DetailLevel.values)),
    Param("includeBody", "calendar", "include_body", "bool"),
    # Written only with secrets: it lets anyone fetch the feed from anywhere.
    Param("feedKey", "calendar", "feed_key", "secret"),
)
BY_KEY = {param.key: param for param in PARAMS}

CALENDAR_FIELDS = tuple(param.field for param in PARAMS if param.section == "calendar")
FILTER_FIELDS = tuple(param.field for param in PARAMS if param.section == "filter")

# What a calendar is when its file says nothing. Unlike a calendar created in
# the admin, a file that names no maskSensitivity masks nothing: an imported
# file keeps exactly what it says (SPEC).
CALENDAR_DEFAULTS: dict[str, object] = {
    "request_window": 7,
    "cache_persistence": 300,
    "send_cache_on_server_error": False,
    "username": "",
    "label": "",
    "timezone": "",
    "include_body": False,
}
FILTER_DEFAULTS: dict[str, object] = {
    "is_cancelled": True,
    "is_draft": False,
    "is_meeting": False,
    "sensitivity": "",
    "importance": "",
    "subject": "",
    "free_busy": "",
    "mask_sensitivity": "",
    "detail_level": Filter.DetailLevel.FULL.value,
}
ALARM_DEFAULTS = dict(Alarm.DEFAULTS)  # edge → (related, offset)

# Model field → the name a message uses, so that problems speak the file's words.
FIELD_NAMES = {param.field: param.name for param in PARAMS if param.section != "alarm"}
FIELD_NAMES.update(
    {
        "calendar_id": "id",
        "server_id": "id",
        "base_uri": "baseuri",
        "http_scheme": "scheme",
        "client_id": "clientid",
        "client_secret": "clientsecret",
        "secret_expires": "expires",
        "service_account": "authentication",
        "app_registration": "authentication",
        "related": "related",
        "offset": "offset",
    }
)

TRUE_WORDS = ("true", "yes", "1", "on")
FALSE_WORDS = ("false", "no", "0", "off")
