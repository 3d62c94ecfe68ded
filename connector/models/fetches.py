"""Who fetched a feed: the last fetch of each (calendar id, client address)."""

from __future__ import annotations

from django.db import models


class FeedFetch(models.Model):
    """The last player fetch of one calendar id from one client address.

    Written at most once a minute per (calendar id, client) by
    connector.services.fetches; the feed's hot path stays one read. The id is
    the one asked for, not a foreign key: fetches of ids that do not exist
    (404) are kept too, a few of them (``known`` is False).
    """

    calendar_id = models.CharField(max_length=100)
    client = models.CharField(max_length=100, help_text="Client address (through TRUSTED_PROXIES)")
    path = models.CharField(max_length=300, help_text="The URL asked for, without its query")
    user_agent = models.CharField(max_length=300, blank=True)
    status = models.PositiveSmallIntegerField(help_text="HTTP status answered")
    at = models.DateTimeField(help_text="When (the first fetch of that minute)")
    known = models.BooleanField(default=True, help_text="False: no calendar has this id")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["calendar_id", "client"], name="feed_fetch_once"),
        ]
        indexes = [models.Index(fields=["calendar_id", "-at"], name="feed_fetch_latest")]

    def __str__(self) -> str:
        return f"{self.calendar_id} from {self.client}"
