"""Models of the connector: configuration (servers, calendars) and state (snapshots)."""

from connector.models.calendars import Alarm, Calendar, Filter, Resource
from connector.models.servers import Server
from connector.models.state import (
    MailboxState,
    RefreshStatus,
    RefusedHost,
    RoomEvents,
    Snapshot,
    WorkerHeartbeat,
)

__all__ = [
    "Alarm",
    "Calendar",
    "Filter",
    "MailboxState",
    "RefreshStatus",
    "RefusedHost",
    "RoomEvents",
    "Resource",
    "Server",
    "Snapshot",
    "WorkerHeartbeat",
]
