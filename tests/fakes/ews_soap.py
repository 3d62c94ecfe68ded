"""The SOAP of the fake Exchange: reading EWS requests, writing Exchange-shaped answers.

The answers follow what Exchange 2007 SP1–2019 and Exchange Online send (element names, order and
namespaces of the EWS schema, ServerVersionInfo in the SOAP header, faults as
HTTP 500 with a detail block) so that unmodified exchangelib parses them.
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr
from zoneinfo import ZoneInfo

from tests.fakes.rooms import FakeEvent

S = "http://schemas.xmlsoap.org/soap/envelope/"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
T = "http://schemas.microsoft.com/exchange/services/2006/types"
E = "http://schemas.microsoft.com/exchange/services/2006/errors"

# RequestServerVersion values, oldest first (EWS schema, ExchangeVersionType).
API_VERSIONS = [
    "Exchange2007",
    "Exchange2007_SP1",
    "Exchange2010",
    "Exchange2010_SP1",
    "Exchange2010_SP2",
    "Exchange2013",
    "Exchange2013_SP1",
    "Exchange2015",
    "Exchange2015_SP1",
    "Exchange2016",
]

# Properties FindItem refuses (streamed or resolved ones), as Exchange does.
FIND_ITEM_FORBIDDEN = {
    "item:Body",
    "item:TextBody",
    "item:UniqueBody",
    "item:Attachments",
    "item:MimeContent",
    "calendar:RequiredAttendees",
    "calendar:OptionalAttendees",
    "calendar:Resources",
}
DEFAULT_SHAPE = [
    "item:Subject",
    "item:Sensitivity",
    "item:Importance",
    "item:Categories",
    "item:IsDraft",
    "calendar:Start",
    "calendar:End",
    "calendar:IsAllDayEvent",
    "calendar:LegacyFreeBusyStatus",
    "calendar:Location",
    "calendar:IsMeeting",
    "calendar:IsCancelled",
    "calendar:IsRecurring",
    "calendar:CalendarItemType",
    "calendar:Organizer",
]
CALENDAR_NAMES = {"en": "Calendar", "de": "Kalender", "fr": "Calendrier", "es": "Calendario"}


def server_version_name(build: tuple[int, int, int, int]) -> str:
    """The Version attribute Exchange puts in ServerVersionInfo for a build."""
    major, minor, _, _ = build
    if (major, minor) == (15, 20):
        return "V2018_01_08"  # Exchange Online
    if major == 15 and minor >= 1:
        return "V2017_07_11"  # Exchange 2016 and 2019 send this string
    return max_api_version(build)


def max_api_version(build: tuple[int, int, int, int]) -> str:
    """The newest RequestServerVersion a build accepts (older ones it accepts too)."""
    major, minor, major_build, _ = build
    if major == 8:  # Exchange 2007: RTM, then SP1 to SP3 share the SP1 schema
        return "Exchange2007" if minor == 0 else "Exchange2007_SP1"
    if major == 14:  # Exchange 2010: SP3 kept the SP2 schema
        return ("Exchange2010", "Exchange2010_SP1")[minor] if minor < 2 else "Exchange2010_SP2"
    if (major, minor) == (15, 0):
        return "Exchange2013_SP1" if major_build >= 847 else "Exchange2013"
    return "Exchange2016"


# Properties a schema version does not know yet: asking for them is a schema validation
# failure ("The 'FieldURI' attribute is invalid - The value ... is invalid according to
# its datatype ... UnindexedFieldURIType").
FIELDS_SINCE = {
    "calendar:StartTimeZone": "Exchange2010",
    "calendar:EndTimeZone": "Exchange2010",
    "calendar:StartTimeZoneId": "Exchange2010",
    "calendar:EndTimeZoneId": "Exchange2010",
    "item:UniqueBody": "Exchange2010",
    "item:TextBody": "Exchange2013",
    "calendar:EnhancedLocation": "Exchange2016",
}


def unknown_fields(fields: Iterable[str], api_version: str) -> list[str]:
    """The FieldURIs that the schema ``api_version`` (as requested) does not define."""
    if api_version not in API_VERSIONS:
        return []
    position = API_VERSIONS.index(api_version)
    return sorted(
        uri
        for uri in fields
        if uri in FIELDS_SINCE and API_VERSIONS.index(FIELDS_SINCE[uri]) > position
    )


# -- requests --------------------------------------------------------------------


@dataclass
class FolderRef:
    distinguished: str = ""  # calendar, root, msgfolderroot ...
    mailbox: str = ""  # <t:Mailbox> of a DistinguishedFolderId; '' = the caller's own
    folder_id: str = ""


@dataclass
class SoapRequest:
    operation: str
    requested_version: str = ""
    impersonate: str = ""  # ExchangeImpersonation: the mailbox acted as
    body: ET.Element | None = None
    additional: list[str] = field(default_factory=list)  # FieldURIs asked for
    base_shape: str = "IdOnly"
    folders: list[FolderRef] = field(default_factory=list)
    view_start: dt.datetime | None = None
    view_end: dt.datetime | None = None
    max_entries: int | None = None
    item_ids: list[str] = field(default_factory=list)
    time_zone_context: bool = False  # the TimeZoneContext header (Exchange 2010 on)


def _t(name: str) -> str:
    return f"{{{T}}}{name}"


def _m(name: str) -> str:
    return f"{{{M}}}{name}"


def parse_datetime(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _folder_refs(container: ET.Element | None) -> list[FolderRef]:
    refs: list[FolderRef] = []
    if container is None:
        return refs
    for child in container:
        if child.tag == _t("DistinguishedFolderId"):
            address = child.findtext(f"{_t('Mailbox')}/{_t('EmailAddress')}") or ""
            refs.append(FolderRef(distinguished=child.get("Id", ""), mailbox=address.lower()))
        elif child.tag == _t("FolderId"):
            refs.append(FolderRef(folder_id=child.get("Id", "")))
    return refs


def parse_request(payload: bytes) -> SoapRequest:
    root = ET.fromstring(payload)
    header = root.find(f"{{{S}}}Header")
    body = root.find(f"{{{S}}}Body")
    if body is None or len(body) == 0:
        raise ValueError("no SOAP body")
    operation_elem = body[0]
    request = SoapRequest(operation=operation_elem.tag.split("}")[-1], body=operation_elem)
    if header is not None:
        version = header.find(_t("RequestServerVersion"))
        if version is not None:
            request.requested_version = version.get("Version", "")
        request.time_zone_context = header.find(_t("TimeZoneContext")) is not None
        sid = header.find(f"{_t('ExchangeImpersonation')}/{_t('ConnectingSID')}")
        if sid is not None:
            for name in ("PrimarySmtpAddress", "SmtpAddress", "PrincipalName"):
                value = sid.findtext(_t(name))
                if value:
                    request.impersonate = value.lower()
                    break
    shape = operation_elem.find(_m("ItemShape"))
    if shape is None:
        shape = operation_elem.find(_m("FolderShape"))
    if shape is not None:
        request.base_shape = shape.findtext(_t("BaseShape")) or "IdOnly"
        request.additional = [
            elem.get("FieldURI", "") for elem in shape.iter(_t("FieldURI")) if elem.get("FieldURI")
        ]
    view = operation_elem.find(_m("CalendarView"))
    if view is not None:
        request.view_start = parse_datetime(view.get("StartDate", ""))
        request.view_end = parse_datetime(view.get("EndDate", ""))
        if view.get("MaxEntriesReturned"):
            request.max_entries = int(view.get("MaxEntriesReturned", "0"))
    request.folders = _folder_refs(operation_elem.find(_m("ParentFolderIds")))
    request.folders += _folder_refs(operation_elem.find(_m("FolderIds")))
    item_ids = operation_elem.find(_m("ItemIds"))
    if item_ids is not None:
        request.item_ids = [elem.get("Id", "") for elem in item_ids]
    return request


# -- answers ---------------------------------------------------------------------


def envelope(body: str, build: tuple[int, int, int, int] | None) -> str:
    header = ""
    if build is not None:
        major, minor, major_build, minor_build = build
        numbers = (
            f'MajorVersion="{major}" MinorVersion="{minor}" '
            f'MajorBuildNumber="{major_build}" MinorBuildNumber="{minor_build}"'
        )
        if major == 8:
            # Not every Exchange sends the Version attribute (exchangelib's version.py says
            # so): Exchange 2007 leaves it out here, so the build alone names the schema.
            header = f'<s:Header><t:ServerVersionInfo {numbers} xmlns:t="{T}"/></s:Header>'
        else:
            header = (
                "<s:Header>"
                f"<h:ServerVersionInfo {numbers} "
                f'Version="{server_version_name(build)}" xmlns:h="{T}" xmlns="{T}" '
                'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
                'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"/>'
                "</s:Header>"
            )
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<s:Envelope xmlns:s="{S}">{header}'
        '<s:Body xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema">'
        f"{body}</s:Body></s:Envelope>"
    )


def fault(code: str, message: str, *, back_off_ms: int | None = None) -> str:
    """A SOAP fault (Exchange sends these with HTTP 500)."""
    message_xml = ""
    if back_off_ms is not None:
        message_xml = (
            f'<t:MessageXml xmlns:t="{T}">'
            f'<t:Value Name="BackOffMilliseconds">{back_off_ms}</t:Value></t:MessageXml>'
        )
    return envelope(
        "<s:Fault>"
        f'<faultcode xmlns:a="{T}">a:{code}</faultcode>'
        f'<faultstring xml:lang="en-US">{escape(message)}</faultstring>'
        "<detail>"
        f'<e:ResponseCode xmlns:e="{E}">{code}</e:ResponseCode>'
        f'<e:Message xmlns:e="{E}">{escape(message)}</e:Message>'
        f"{message_xml}"
        "</detail></s:Fault>",
        None,
    )


def response(operation: str, messages: Iterable[str], build: tuple[int, int, int, int]) -> str:
    return envelope(
        f'<m:{operation}Response xmlns:m="{M}" xmlns:t="{T}">'
        f"<m:ResponseMessages>{''.join(messages)}</m:ResponseMessages>"
        f"</m:{operation}Response>",
        build,
    )


def error_message(operation: str, code: str, text: str) -> str:
    return (
        f'<m:{operation}ResponseMessage ResponseClass="Error">'
        f"<m:MessageText>{escape(text)}</m:MessageText>"
        f"<m:ResponseCode>{code}</m:ResponseCode>"
        "<m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>"
        f"</m:{operation}ResponseMessage>"
    )


def success_message(operation: str, content: str) -> str:
    return (
        f'<m:{operation}ResponseMessage ResponseClass="Success">'
        f"<m:ResponseCode>NoError</m:ResponseCode>{content}"
        f"</m:{operation}ResponseMessage>"
    )


def warning_message(operation: str, code: str, content: str) -> str:
    """A message that did its work with a caveat: ResponseClass="Warning" and the answer."""
    return (
        f'<m:{operation}ResponseMessage ResponseClass="Warning">'
        f"<m:MessageText>{escape(code)}</m:MessageText>"
        f"<m:ResponseCode>{code}</m:ResponseCode>"
        f"<m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>{content}"
        f"</m:{operation}ResponseMessage>"
    )


def utc_text(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class MailboxZone:
    """The time zone of a mailbox: all-day events are its local midnights."""

    iana: str = "Europe/Paris"
    windows: str = "Romance Standard Time"
    display: str = "(UTC+01:00) Brussels, Copenhagen, Madrid, Paris"

    def midnight(self, day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(), tzinfo=ZoneInfo(self.iana)).astimezone(dt.UTC)


def _instant(value: dt.datetime | dt.date, zone: MailboxZone) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    return zone.midnight(value)


def legacy_dn(email: str) -> str:
    """The X500 address Exchange Online puts in FindItem answers for internal senders."""
    alias = email.split("@")[0].upper()
    return (
        "/O=EXCHANGELABS/OU=EXCHANGE ADMINISTRATIVE GROUP (FYDIBOHF23SPDLT)/CN=RECIPIENTS/"
        f"CN=5A3C1E0F2B8D4C6E9F01A2B3C4D5E6F7-{alias}"
    )


def calendar_item(
    event: FakeEvent,
    fields: list[str],
    zone: MailboxZone,
    *,
    organizer_smtp: bool = True,
    time_format: str = "%Y-%m-%dT%H:%M:%SZ",
) -> str:
    """One <t:CalendarItem> with the requested properties, in the schema's order."""
    wanted = set(fields)
    parts = [f"<t:ItemId Id={quoteattr(event.item_id)} ChangeKey={quoteattr(event.change_key)}/>"]

    def add(uri: str, element: str, text: str, attrs: str = "") -> None:
        # Exchange leaves out a property that has no value rather than send it empty.
        if uri in wanted and text:
            parts.append(f"<t:{element}{attrs}>{escape(text)}</t:{element}>")

    def when(value: dt.datetime) -> str:
        # Exchange writes UTC with a Z; with a DateTimePrecision it adds milliseconds, and
        # some servers write the mailbox's offset instead.
        if "%z" in time_format:
            text = value.astimezone(ZoneInfo(zone.iana)).strftime(time_format)
            return f"{text[:-2]}:{text[-2:]}"  # +01:00, as xs:dateTime writes it
        return value.astimezone(dt.UTC).strftime(time_format)

    def flag(value: bool) -> str:
        return "true" if value else "false"

    add("item:Subject", "Subject", event.subject)
    add("item:Sensitivity", "Sensitivity", event.sensitivity)
    add("item:Body", "Body", event.body, ' BodyType="Text"')
    if "item:Categories" in wanted and event.categories:
        strings = "".join(f"<t:String>{escape(c)}</t:String>" for c in event.categories)
        parts.append(f"<t:Categories>{strings}</t:Categories>")
    add("item:Importance", "Importance", event.importance)
    add("item:IsDraft", "IsDraft", flag(event.is_draft))
    add("item:LastModifiedTime", "LastModifiedTime", when(event.last_modified))
    add("item:TextBody", "TextBody", event.body, ' BodyType="Text"')
    add("calendar:UID", "UID", event.uid)
    if event.series_start is not None:
        add("calendar:RecurrenceId", "RecurrenceId", when(_instant(event.series_start, zone)))
    add("calendar:Start", "Start", when(_instant(event.start, zone)))
    add("calendar:End", "End", when(_instant(event.end, zone)))
    if event.series_start is not None:
        add("calendar:OriginalStart", "OriginalStart", when(_instant(event.series_start, zone)))
    add("calendar:IsAllDayEvent", "IsAllDayEvent", flag(event.all_day))
    add("calendar:LegacyFreeBusyStatus", "LegacyFreeBusyStatus", event.free_busy)
    if event.location:
        add("calendar:Location", "Location", event.location)
    add("calendar:IsMeeting", "IsMeeting", flag(event.is_meeting))
    add("calendar:IsCancelled", "IsCancelled", flag(event.is_cancelled))
    add("calendar:IsRecurring", "IsRecurring", flag(event.is_recurring))
    add(
        "calendar:CalendarItemType",
        "CalendarItemType",
        # A moved occurrence (its start is not its original start) is an Exception.
        ("Occurrence" if event.start == event.series_start else "Exception")
        if event.is_recurring
        else "Single",
    )
    if "calendar:Organizer" in wanted and (event.organizer_email or event.organizer_name):
        if organizer_smtp or not event.organizer_email.endswith("@contoso.com"):
            address, routing = event.organizer_email, "SMTP"
        else:
            address, routing = legacy_dn(event.organizer_email), "EX"
        parts.append(
            "<t:Organizer><t:Mailbox>"
            f"<t:Name>{escape(event.organizer_name)}</t:Name>"
            f"<t:EmailAddress>{escape(address)}</t:EmailAddress>"
            f"<t:RoutingType>{routing}</t:RoutingType>"
            "<t:MailboxType>Mailbox</t:MailboxType>"
            "</t:Mailbox></t:Organizer>"
        )
    for uri, element in (
        ("calendar:StartTimeZone", "StartTimeZone"),
        ("calendar:EndTimeZone", "EndTimeZone"),
    ):
        if uri in wanted:
            parts.append(
                f"<t:{element} Id={quoteattr(zone.windows)} Name={quoteattr(zone.display)}/>"
            )
    return f"<t:CalendarItem>{''.join(parts)}</t:CalendarItem>"


def calendar_folder(folder_id: str, change_key: str, name: str, count: int) -> str:
    return (
        "<t:CalendarFolder>"
        f"<t:FolderId Id={quoteattr(folder_id)} ChangeKey={quoteattr(change_key)}/>"
        "<t:FolderClass>IPF.Appointment</t:FolderClass>"
        f"<t:DisplayName>{escape(name)}</t:DisplayName>"
        f"<t:TotalCount>{count}</t:TotalCount>"
        "<t:ChildFolderCount>0</t:ChildFolderCount>"
        "</t:CalendarFolder>"
    )


def plain_folder(folder_id: str, change_key: str, name: str) -> str:
    return (
        "<t:Folder>"
        f"<t:FolderId Id={quoteattr(folder_id)} ChangeKey={quoteattr(change_key)}/>"
        "<t:FolderClass>IPF.Note</t:FolderClass>"
        f"<t:DisplayName>{escape(name)}</t:DisplayName>"
        "<t:TotalCount>0</t:TotalCount><t:ChildFolderCount>1</t:ChildFolderCount>"
        "<t:UnreadCount>0</t:UnreadCount>"
        "</t:Folder>"
    )
