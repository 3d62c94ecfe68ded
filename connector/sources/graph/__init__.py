"""Microsoft Graph: room calendars read with change tracking (calendarView/delta).

App-only (the Calendars.Read application permission), or a delegated sign-in
reading the rooms its account has rights on (Calendars.Read.Shared, same URLs).

``source.py`` holds ``GraphSource`` (the one public class); ``client.py`` the
HTTP (pooled sessions, the per-app concurrency limit, throttling, paging);
``delta.py`` what a round of change tracking leaves in the database for the
next refresh; ``mapping.py`` Graph's event JSON as EventRecords; ``errors.py``
Graph's error answers as SourceErrors with hints.
"""

from connector.sources.graph.source import GraphSource

__all__ = ["GraphSource"]
