"""Admin pages: the configurations imports replaced (list, download, restore).

Under /admin/connector/calendar/revisions/, routed by ``configuration.urls``.
Listing and downloading need the export permissions (a revision holds no
secret); restoring needs the import permissions, and shows the import's
preview first: confirming imports the revision only when the plan is still
the one shown (its fingerprint), else the new plan is shown instead.
"""

from __future__ import annotations

import logging

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import formats, timezone
from django.views.decorators.http import require_http_methods

from connector import xmlconfig
from connector.admin.configuration import (
    can_export,
    can_import,
    context,
    kept_note,
    preview,
    xml_download,
)
from connector.models import ConfigRevision
from connector.xmlconfig.revisions import revision_filename, revisions

log = logging.getLogger(__name__)


def _revision(number: int) -> ConfigRevision:
    try:
        return ConfigRevision.objects.get(pk=number)
    except ConfigRevision.DoesNotExist:
        raise Http404(f"There is no revision {number}.") from None


@require_http_methods(["GET"])
def revision_list(request: HttpRequest) -> HttpResponse:
    if not can_export(request.user):
        raise PermissionDenied
    return render(
        request,
        "admin/connector/config_revisions.html",
        context(
            request,
            "Configuration revisions",
            revisions=list(revisions()),
            can_restore=can_import(request.user),
        ),
    )


@require_http_methods(["GET"])
def revision_download(request: HttpRequest, number: int) -> HttpResponse:
    if not can_export(request.user):
        raise PermissionDenied
    revision = _revision(number)
    return xml_download(revision.xml, revision_filename(revision))


@require_http_methods(["GET", "POST"])
def revision_restore(request: HttpRequest, number: int) -> HttpResponse:
    """GET: the preview of the restore; POST: restore (or cancel)."""
    if not can_import(request.user):
        raise PermissionDenied
    revision = _revision(number)
    if request.method == "POST" and "cancel" in request.POST:
        messages.info(request, "Restore cancelled; nothing was changed.")
        return redirect("admin:connector_calendar_revisions")
    origin = xmlconfig.Origin(
        source="admin restore",
        by=request.user.get_username(),
        reason=f"restore of revision {revision.pk}",
    )
    try:
        if request.method == "POST":
            plan = xmlconfig.restore_revision(
                revision, expected_fingerprint=request.POST.get("fingerprint", ""), origin=origin
            )
        else:
            plan = xmlconfig.restore_revision(revision, dry_run=True)
    except xmlconfig.ConfigError as exc:
        # A revision was written by the export; it fails only if the rules changed since.
        for problem in exc.problems:
            messages.error(request, f"Revision {revision.pk}: {problem}")
        return redirect("admin:connector_calendar_revisions")
    except xmlconfig.PlanChanged as exc:
        messages.warning(request, str(exc))
        plan = exc.plan
    else:
        if request.method == "POST":
            log.info("revision %s restored by %s: %s", revision.pk, request.user, plan.summary())
            if plan.is_empty:
                messages.info(request, f"Revision {revision.pk}: nothing to change.")
            else:
                messages.success(
                    request,
                    f"Restored revision {revision.pk}: {plan.summary()}. {kept_note(plan)}",
                )
            for warning in plan.warnings:
                messages.warning(request, warning)
            return redirect("admin:connector_calendar_changelist")
    created = formats.date_format(timezone.localtime(revision.created), "DATETIME_FORMAT")
    return preview(
        request,
        plan,
        title=f"Restore revision {revision.pk}: preview",
        action=reverse("admin:connector_calendar_revision_restore", args=[revision.pk]),
        hidden={"fingerprint": plan.fingerprint()},
        revision=revision,
        revision_created=created,
    )
