"""Admin pages: import configuration.xml (upload → preview → confirm) and export it.

``calendars.CalendarAdmin`` routes them (its ``get_urls``, through ``urls``
here) under the admin site's ``admin_view``, with the revision pages of
``revisions``, and offers the export of selected calendars as actions; who may
import or export is decided here (``can_import``, ``can_export``).

The preview names, in red, the feeds the import would remove, with their
players' last fetch; a merge (the upload form's checkbox) removes nothing.

Between preview and confirm the uploaded file waits in DATA_DIR, encrypted with
the field-encryption key (it may hold passwords), under a random name that only
the uploader's session knows; confirm reads that copy, never a new upload, and
deletes it. Confirm imports through ``xmlconfig.import_configuration`` with the
fingerprint of the plan previewed: when the database changed meanwhile, the new
plan is previewed instead and nothing is written.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from pathlib import Path
from typing import Any

from cryptography.fernet import InvalidToken
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import URLPattern, reverse
from django.urls import path as url_path
from django.views.decorators.http import require_http_methods

from accounts import crypto
from connector import xmlconfig
from connector.models import Calendar

log = logging.getLogger(__name__)

SESSION_KEY = "xmlconfig_upload"
UPLOAD_LIFETIME = 3600  # seconds an uploaded file waits for its confirmation

IMPORT_PERMISSIONS = (
    "connector.add_calendar",
    "connector.change_calendar",
    "connector.delete_calendar",
    "connector.add_server",
    "connector.change_server",
    "connector.delete_server",
    "accounts.add_serviceaccount",
    "accounts.change_serviceaccount",
    "accounts.add_appregistration",
    "accounts.change_appregistration",
)
EXPORT_PERMISSIONS = (
    "connector.view_calendar",
    "connector.view_server",
    "accounts.view_serviceaccount",
    "accounts.view_appregistration",
)


def can_import(user: Any) -> bool:
    """An import adds, changes and removes calendars, servers and credentials."""
    return bool(user.is_active and user.is_staff and user.has_perms(IMPORT_PERMISSIONS))


def can_export(user: Any, *, include_secrets: bool = False) -> bool:
    """The export names credentials (usernames, tenants); secrets only for superusers."""
    if include_secrets:
        return bool(user.is_active and user.is_superuser)
    return bool(user.is_active and user.is_staff and user.has_perms(EXPORT_PERMISSIONS))


def xml_download(text: str, filename: str = "configuration.xml") -> HttpResponse:
    response = HttpResponse(text.encode(), content_type="application/xml; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


class UploadForm(forms.Form):
    file = forms.FileField(label="configuration.xml")
    merge = forms.BooleanField(
        label="Merge",
        required=False,
        help_text="Add and change what the file names; remove no server or calendar it leaves out.",
    )


def urls(wrap: Any) -> list[URLPattern]:
    """The import, export and revision pages, under /admin/connector/calendar/."""
    from connector.admin import revisions

    return [
        url_path("import/", wrap(import_upload), name="connector_calendar_import"),
        url_path("import/confirm/", wrap(import_confirm), name="connector_calendar_import_confirm"),
        url_path("export/", wrap(export_download), name="connector_calendar_export"),
        url_path("revisions/", wrap(revisions.revision_list), name="connector_calendar_revisions"),
        url_path(
            "revisions/<int:number>/download/",
            wrap(revisions.revision_download),
            name="connector_calendar_revision_download",
        ),
        url_path(
            "revisions/<int:number>/restore/",
            wrap(revisions.revision_restore),
            name="connector_calendar_revision_restore",
        ),
    ]


# --- the waiting upload --------------------------------------------------------------


def _uploads_dir() -> Path:
    path = Path(settings.DATA_DIR) / "imports"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def _forget_old_uploads() -> None:
    limit = time.time() - UPLOAD_LIFETIME
    for path in _uploads_dir().glob("*.xml.enc"):
        try:
            if path.stat().st_mtime < limit:
                path.unlink()
        except FileNotFoundError:
            pass


def _keep_upload(
    request: HttpRequest, data: bytes, name: str, fingerprint: str, *, merge: bool
) -> str:
    token = secrets.token_urlsafe(24)
    path = _uploads_dir() / f"{token}.xml.enc"
    path.write_bytes(crypto.fernet().encrypt(data))
    path.chmod(0o600)
    request.session[SESSION_KEY] = {
        "token": token,
        "name": name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "fingerprint": fingerprint,
        "merge": merge,
    }
    return token


def _waiting_upload(request: HttpRequest, token: str) -> tuple[bytes, dict[str, Any]] | None:
    info = request.session.get(SESSION_KEY)
    if not info or not token or not secrets.compare_digest(str(info.get("token")), token):
        return None
    path = _uploads_dir() / f"{info['token']}.xml.enc"
    try:
        data = crypto.fernet().decrypt(path.read_bytes(), ttl=UPLOAD_LIFETIME)
    except (FileNotFoundError, InvalidToken):
        return None
    if hashlib.sha256(data).hexdigest() != info.get("sha256"):
        return None
    return data, info


def _drop_upload(request: HttpRequest) -> None:
    info = request.session.pop(SESSION_KEY, None)
    if info:
        (_uploads_dir() / f"{info['token']}.xml.enc").unlink(missing_ok=True)


# --- views -------------------------------------------------------------------------


def context(request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
    return {
        **admin.site.each_context(request),
        "title": title,
        "opts": _calendar_opts(),
        **extra,
    }


def preview(
    request: HttpRequest,
    plan: xmlconfig.Plan,
    *,
    title: str,
    action: str,
    hidden: dict[str, str],
    **extra: Any,
) -> HttpResponse:
    """What an import would change, with the buttons to go on or cancel.

    ``action`` receives the form; ``hidden`` its fields (the upload's token, or
    the fingerprint of the plan shown). Shared by the upload and the restore of
    a revision.
    """
    return render(
        request,
        "admin/connector/config_preview.html",
        context(
            request,
            title,
            plan=plan,
            disappearing=xmlconfig.disappearing_feeds(plan),
            action=action,
            hidden=hidden,
            **extra,
        ),
    )


def kept_note(plan: xmlconfig.Plan) -> str:
    if plan.revision is None:
        return ""
    return (
        f"The configuration it replaced is kept as revision {plan.revision.pk} "
        "(Configuration revisions)."
    )


def _upload_preview(
    request: HttpRequest, plan: xmlconfig.Plan, *, token: str, filename: str
) -> HttpResponse:
    return preview(
        request,
        plan,
        title="Import configuration.xml: preview",
        action=reverse("admin:connector_calendar_import_confirm"),
        hidden={"token": token},
        filename=filename,
    )


def _calendar_opts() -> Any:
    return Calendar._meta


@require_http_methods(["GET", "POST"])
def import_upload(request: HttpRequest) -> HttpResponse:
    if not can_import(request.user):
        raise PermissionDenied
    form = UploadForm(request.POST or None, request.FILES or None)
    problems: list[str] = []
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        merge = form.cleaned_data["merge"]
        limit = settings.CONFIG_MAX_BYTES
        # Read one byte more than allowed: enough to know it is too big.
        data = upload.read(limit + 1)
        try:
            plan = xmlconfig.import_configuration(data, dry_run=True, merge=merge)
        except xmlconfig.ConfigError as exc:
            problems = [str(problem) for problem in exc.problems]
            log.info("configuration.xml upload refused: %s problem(s)", len(problems))
        else:
            _drop_upload(request)
            _forget_old_uploads()
            token = _keep_upload(request, data, upload.name, plan.fingerprint(), merge=merge)
            return _upload_preview(request, plan, token=token, filename=upload.name)
    return render(
        request,
        "admin/connector/config_import.html",
        context(
            request,
            "Import configuration.xml",
            form=form,
            problems=problems,
            max_bytes=settings.CONFIG_MAX_BYTES,
        ),
    )


@require_http_methods(["POST"])
def import_confirm(request: HttpRequest) -> HttpResponse:
    if not can_import(request.user):
        raise PermissionDenied
    if "cancel" in request.POST:
        _drop_upload(request)
        messages.info(request, "Import cancelled; nothing was changed.")
        return redirect("admin:connector_calendar_changelist")
    waiting = _waiting_upload(request, request.POST.get("token", ""))
    if waiting is None:
        messages.error(
            request,
            "That upload is no longer waiting (expired or already imported); upload it again.",
        )
        return redirect("admin:connector_calendar_import")
    data, info = waiting
    merge = bool(info.get("merge"))
    origin = xmlconfig.Origin(
        source="admin upload",
        by=request.user.get_username(),
        reason=f"import of {info['name']}{' (merge)' if merge else ''}",
    )
    try:
        plan = xmlconfig.import_configuration(
            data, merge=merge, expected_fingerprint=info["fingerprint"], origin=origin
        )
    except xmlconfig.ConfigError as exc:
        _drop_upload(request)
        for problem in exc.problems:
            messages.error(request, str(problem))
        return redirect("admin:connector_calendar_import")
    except xmlconfig.PlanChanged as exc:
        # The database changed since the preview: show what would happen now.
        request.session[SESSION_KEY] = {**info, "fingerprint": exc.plan.fingerprint()}
        messages.warning(request, str(exc))
        return _upload_preview(request, exc.plan, token=info["token"], filename=info["name"])
    _drop_upload(request)
    log.info("configuration.xml imported by %s: %s", request.user, plan.summary())
    if plan.is_empty:
        messages.info(request, f"Imported {info['name']}: nothing to change.")
    else:
        messages.success(request, f"Imported {info['name']}: {plan.summary()}. {kept_note(plan)}")
    for warning in plan.warnings:
        messages.warning(request, warning)
    return redirect("admin:connector_calendar_changelist")


@require_http_methods(["GET"])
def export_download(request: HttpRequest) -> HttpResponse:
    include_secrets = request.GET.get("secrets") == "1"
    if not can_export(request.user, include_secrets=include_secrets):
        raise PermissionDenied
    if include_secrets:
        log.info("configuration.xml exported with secrets by %s", request.user)
    return xml_download(xmlconfig.export_configuration(include_secrets=include_secrets))
