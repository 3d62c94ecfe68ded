"""Models of the connector: configuration (servers, calendars) and state (snapshots)."""

from connector.models.calendars import Alarm, Calendar, Filter, Resource
from connector.models.fetches import FeedFetch
from connector.models.revisions import ConfigRevision
from connector.models.servers import Server
from connector.models.state import (
    GraphDeltaState,
    MailboxState,
    Milestone,
    RefreshStatus,
    RefusedHost,
    RoomEvents,
    Snapshot,
    WorkerHeartbeat,
)

__all__ = [
    "Alarm",
    "Calendar",
    "ConfigRevision",
    "FeedFetch",
    "Filter",
    "GraphDeltaState",
    "MailboxState",
    "Milestone",
    "RefreshStatus",
    "RefusedHost",
    "RoomEvents",
    "Resource",
    "Server",
    "Snapshot",
    "WorkerHeartbeat",
]
