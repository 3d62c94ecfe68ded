"""The delegated sign-in: a service account signs in once in the browser.

``sign_in`` starts msal's authorization code flow (with PKCE) and sends the
browser to the identity platform; ``sign_in_done`` receives the code, redeems
it and keeps the refresh token. The flow waits in the session in between.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse

from accounts.models import AppRegistration
from accounts.tokens import finish_sign_in, start_sign_in
from connector.core.errors import SourceError

SESSION_KEY = "accounts_sign_in"


def _get_app_for_user(request: HttpRequest, pk: int) -> AppRegistration:
    if not request.user.has_perm("accounts.change_appregistration"):
        raise PermissionDenied
    return get_object_or_404(AppRegistration, pk=pk, flow=AppRegistration.Flow.DELEGATED)


def _admin_page(app_pk: int) -> str:
    return reverse("admin:accounts_appregistration_change", args=[app_pk])


@staff_member_required
def sign_in(request: HttpRequest, pk: int) -> HttpResponse:
    app = _get_app_for_user(request, pk)
    redirect_uri = request.build_absolute_uri(reverse("accounts-sign-in-done"))
    try:
        flow = start_sign_in(app, redirect_uri)
    except SourceError as error:
        messages.error(request, error.as_text())
        return redirect(_admin_page(app.pk))
    request.session[SESSION_KEY] = {"app": app.pk, "flow": flow}
    return redirect(flow["auth_uri"])


@staff_member_required
def sign_in_done(request: HttpRequest) -> HttpResponse:
    pending = request.session.pop(SESSION_KEY, None)
    if not pending:
        messages.error(
            request,
            "No sign-in was in progress in this browser session. Start it again with "
            '"Sign in" on the app registration.',
        )
        return redirect(reverse("admin:accounts_appregistration_changelist"))
    app = _get_app_for_user(request, pending["app"])
    try:
        account = finish_sign_in(app, pending["flow"], request.GET.dict())
    except SourceError as error:
        messages.error(request, error.as_text())
    else:
        messages.success(
            request,
            f"Signed in as {account}. Calendars of servers using {app.name} read with this "
            "account from now on.",
        )
    return redirect(_admin_page(app.pk))
