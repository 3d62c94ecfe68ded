"""Revisions: every import first keeps the configuration it replaces.

``keep_revision(origin)`` stores the configuration as it is now (called by
``import_configuration`` inside the import's transaction, just before it
writes, so a failed import keeps no revision); at most
``CONFIG_REVISIONS_KEPT`` revisions are kept, the oldest go first.
``restore_revision`` (in the package) imports a revision back through the
same import path, which keeps the configuration it replaces in its turn.

A revision holds the configuration.xml as ``export_config`` writes it, without
secrets; the credential of each server by reference (model and primary key,
never a password or secret); and the feed keys, encrypted like every stored
secret. See ``connector.models.revisions``.
"""

from __future__ import annotations

import getpass
import json
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import QuerySet

from connector.models import Calendar, ConfigRevision, Server
from connector.xmlconfig.writer import export_configuration


@dataclass(frozen=True)
class Origin:
    """What is importing, said on the revision it keeps."""

    source: str  # "manage.py import_config", "admin upload" ...
    by: str = ""  # an admin user; for a command, the login running it
    reason: str = ""  # "before importing lobby.xml (merge)"


def command_user() -> str:
    """The login running a management command, as far as the system says."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


@dataclass
class Kept:
    """What a restore brings back besides the file: credentials by reference, feed keys."""

    credential_refs: dict[str, tuple[str, int]] = field(default_factory=dict)
    feed_keys: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, revision: ConfigRevision) -> Kept:
        refs = {
            server_id: (str(ref[0]), int(ref[1]))
            for server_id, ref in (revision.credentials or {}).items()
        }
        return cls(credential_refs=refs, feed_keys=revision.kept_feed_keys())


def keep_revision(origin: Origin) -> ConfigRevision:
    """Store the configuration as it is now, then forget the oldest beyond the limit."""
    refs: dict[str, list[str | int]] = {}
    credentials: set[tuple[str, int]] = set()
    servers = Server.objects.order_by("server_id")
    for server in servers:
        if server.service_account_id:
            ref = ("ServiceAccount", server.service_account_id)
        elif server.app_registration_id:
            ref = ("AppRegistration", server.app_registration_id)
        else:
            continue
        refs[server.server_id] = list(ref)
        credentials.add(ref)
    feed_keys = dict(
        Calendar.objects.order_by("calendar_id").values_list("calendar_id", "feed_key")
    )
    revision = ConfigRevision.objects.create(
        source=origin.source[:100],
        by=origin.by[:150],
        reason=origin.reason[:300],
        xml=export_configuration(include_secrets=False),
        credentials=refs,
        feed_keys=json.dumps(feed_keys) if feed_keys else "",
        servers=len(servers),
        calendars=len(feed_keys),
        credential_count=len(credentials),
    )
    prune_revisions()
    return revision


def prune_revisions(keep: int | None = None) -> int:
    """Delete all but the newest ``keep`` (CONFIG_REVISIONS_KEPT) revisions; how many went."""
    keep = settings.CONFIG_REVISIONS_KEPT if keep is None else keep
    kept = list(ConfigRevision.objects.order_by("-pk").values_list("pk", flat=True)[:keep])
    deleted, _ = ConfigRevision.objects.exclude(pk__in=kept).delete()
    return deleted


def revisions() -> QuerySet[ConfigRevision]:
    """The kept revisions, newest first."""
    return ConfigRevision.objects.order_by("-pk")


def revision_filename(revision: ConfigRevision) -> str:
    return f"configuration-revision-{revision.pk}.xml"
