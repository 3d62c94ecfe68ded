"""configuration.xml: the PHP connector's file, imported and exported.

- ``read_configuration(data)`` parses and checks a file (ConfigError lists
  every problem as "line N: message");
- ``make_plan(config)`` says what importing it would add, change and remove;
- ``apply_plan(plan)`` writes it, all or nothing;
- ``import_configuration(data, dry_run=..., expected_fingerprint=...)`` does
  the three in one transaction; it is the one import path, of ``manage.py
  import_config`` and of the admin's confirm step (which passes the
  fingerprint of the plan it previewed);
- ``export_configuration(calendars=None, include_secrets=False)`` writes the file.
"""

from __future__ import annotations

from django.db import transaction

from connector.xmlconfig.plan import Change, Plan, PlanChanged, apply_plan, make_plan
from connector.xmlconfig.reader import ConfigError, Configuration, Problem, read_configuration
from connector.xmlconfig.writer import NAMESPACE, export_configuration

__all__ = [
    "NAMESPACE",
    "Change",
    "ConfigError",
    "Configuration",
    "Plan",
    "PlanChanged",
    "Problem",
    "apply_plan",
    "export_configuration",
    "import_configuration",
    "make_plan",
    "read_configuration",
]


def import_configuration(
    data: bytes, *, dry_run: bool = False, expected_fingerprint: str | None = None
) -> Plan:
    """Read, plan and (unless ``dry_run``) apply a configuration.xml.

    Raises ConfigError, with the database untouched, when the file is invalid.
    With ``expected_fingerprint`` (``Plan.fingerprint()`` of a plan shown
    earlier, such as the admin's preview), raises PlanChanged, with the
    database untouched, when the plan computed now is a different one: what
    was confirmed is then not what would be written.
    """
    config = read_configuration(data)
    with transaction.atomic():
        plan = make_plan(config)
        if expected_fingerprint is not None and plan.fingerprint() != expected_fingerprint:
            raise PlanChanged(plan)
        if not dry_run:
            apply_plan(plan)
    return plan
