"""Revisions: the configuration as it was before an import replaced it.

Every import that writes something first keeps what it replaces (README:
"configuration.xml"); ``manage.py restore_config`` and the admin list,
download and restore them. The configuration is kept as ``export_config``
writes it without secrets. What a restore needs besides is kept as
references: the credential (service account, app registration) each server
used, by primary key, never its password or secret. Feed keys, which players
carry in their URL, are kept encrypted like every other stored secret, so that
a calendar brought back answers the players that still have its old URL.
"""

from __future__ import annotations

import json

from django.db import models
from django.utils import timezone

from accounts.fields import EncryptedTextField, SecretsModel


class ConfigRevision(SecretsModel):
    created = models.DateTimeField(default=timezone.now, db_index=True)
    source = models.CharField(
        max_length=100, help_text="What imported: manage.py import_config, the admin's upload …"
    )
    by = models.CharField(max_length=150, blank=True, help_text="Who: an admin user, a login.")
    reason = models.CharField(max_length=300, blank=True, help_text="What replaced it.")
    xml = models.TextField(help_text="The configuration.xml, as export_config writes it.")
    credentials = models.JSONField(
        default=dict,
        help_text="The credential of each server, by reference: "
        '{"serverId": ["ServiceAccount", 3]}.',
    )
    feed_keys = EncryptedTextField(blank=True, help_text="{calendarId: feed key}, as JSON.")
    servers = models.PositiveIntegerField(default=0)
    calendars = models.PositiveIntegerField(default=0)
    credential_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-pk"]
        verbose_name = "configuration revision"

    def __str__(self) -> str:
        return f"revision {self.pk}"

    @property
    def counts(self) -> str:
        return (
            f"{self.servers} server{'s' if self.servers != 1 else ''}, "
            f"{self.calendars} calendar{'s' if self.calendars != 1 else ''}, "
            f"{self.credential_count} credential{'s' if self.credential_count != 1 else ''}"
        )

    def kept_feed_keys(self) -> dict[str, str]:
        return dict(json.loads(self.feed_keys)) if self.feed_keys else {}
