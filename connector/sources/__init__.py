"""Sources of calendar data: EWS, Microsoft Graph and iCalendar files.

Each source has one public method, ``fetch(resource, window) -> list[EventRecord]``,
and raises only ``SourceError``.
"""
