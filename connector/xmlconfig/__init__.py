"""configuration.xml: the PHP connector's file, imported and exported.

- ``read_configuration(data)`` parses and checks a file (ConfigError lists
  every problem as "line N: message");
- ``make_plan(config, merge=...)`` says what importing it would add, change
  and remove (nothing is removed in a merge);
- ``apply_plan(plan)`` writes it, all or nothing;
- ``import_configuration(data, dry_run=..., merge=..., expected_fingerprint=...)``
  does the three in one transaction; it is the one import path, of ``manage.py
  import_config``, of the admin's confirm step (which passes the fingerprint
  of the plan it previewed) and of ``restore_revision``. Before it writes, it
  keeps the configuration it replaces as a revision (``revisions``);
- ``restore_revision(revision, ...)`` imports a kept revision back;
- ``export_configuration(calendars=None, include_secrets=False)`` writes the file;
- ``disappearing_feeds(plan)`` names the feeds an import would remove, each
  with its players' last fetch.
"""

from __future__ import annotations

from django.db import transaction

from connector.models import ConfigRevision
from connector.xmlconfig.disappearing import Disappearing, disappearing_feeds
from connector.xmlconfig.plan import Change, Plan, PlanChanged, apply_plan, make_plan
from connector.xmlconfig.reader import ConfigError, Configuration, Problem, read_configuration
from connector.xmlconfig.revisions import Kept, Origin, keep_revision
from connector.xmlconfig.writer import NAMESPACE, export_configuration

__all__ = [
    "NAMESPACE",
    "Change",
    "ConfigError",
    "Configuration",
    "Disappearing",
    "Origin",
    "Plan",
    "PlanChanged",
    "Problem",
    "apply_plan",
    "disappearing_feeds",
    "export_configuration",
    "import_configuration",
    "make_plan",
    "read_configuration",
    "restore_revision",
]

DEFAULT_ORIGIN = Origin(source="import")


def import_configuration(
    data: bytes,
    *,
    dry_run: bool = False,
    merge: bool = False,
    expected_fingerprint: str | None = None,
    origin: Origin = DEFAULT_ORIGIN,
    kept: Kept | None = None,
) -> Plan:
    """Read, plan and (unless ``dry_run``) apply a configuration.xml.

    Raises ConfigError, with the database untouched, when the file is invalid.
    With ``merge``, servers and calendars the file does not name are kept.
    With ``expected_fingerprint`` (``Plan.fingerprint()`` of a plan shown
    earlier, such as the admin's preview), raises PlanChanged, with the
    database untouched, when the plan computed now is a different one: what
    was confirmed is then not what would be written.

    A plan that writes something first keeps the configuration it replaces as
    a revision, said to come from ``origin``. ``kept`` (a revision being
    restored): the credentials by reference and the feed keys the file lacks.
    """
    config = read_configuration(data)
    if kept is not None:
        for spec in config.calendars:
            if spec.feed_key is None and spec.calendar_id in kept.feed_keys:
                spec.feed_key = kept.feed_keys[spec.calendar_id]
    with transaction.atomic():
        plan = make_plan(
            config, merge=merge, credential_refs=kept.credential_refs if kept else None
        )
        if expected_fingerprint is not None and plan.fingerprint() != expected_fingerprint:
            raise PlanChanged(plan)
        if not dry_run and not plan.is_empty:
            plan.revision = keep_revision(origin)
            apply_plan(plan)
    return plan


def restore_revision(
    revision: ConfigRevision,
    *,
    dry_run: bool = False,
    expected_fingerprint: str | None = None,
    origin: Origin = DEFAULT_ORIGIN,
) -> Plan:
    """Bring back the configuration a revision kept, through ``import_configuration``.

    The whole configuration is restored (what was added since is removed); the
    configuration it replaces is kept as a new revision first.
    """
    return import_configuration(
        revision.xml.encode(),
        dry_run=dry_run,
        expected_fingerprint=expected_fingerprint,
        origin=origin,
        kept=Kept.of(revision),
    )
