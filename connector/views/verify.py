"""The Verify page of an app registration: a token asked for now, what it grants, a room read.

For those who may change app registrations (it may replace a client secret by
its pending successor). The work is ``connector.services.verify``.
"""

from __future__ import annotations

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.cache import never_cache

from accounts.models import AppRegistration
from connector.roles import can_verify_credentials, login_or_403
from connector.services.verify import verify_app_registration
from connector.views.pages import page_context

may_verify = login_or_403(
    can_verify_credentials, "Only those who may change app registrations may verify them."
)


class VerifyForm(forms.Form):
    ordinary_mailbox = forms.EmailField(
        required=False,
        label="Ordinary mailbox (optional)",
        help_text="A user's mailbox that the app must NOT be able to read (least privilege): "
        "Verify checks that reading it is refused.",
    )


@never_cache
@may_verify
def verify_page(request: HttpRequest, pk: int) -> HttpResponse:
    app = get_object_or_404(AppRegistration, pk=pk)
    report = None
    form = VerifyForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        report = verify_app_registration(
            app, ordinary_mailbox=form.cleaned_data["ordinary_mailbox"] or ""
        )
    context = {
        **page_context(request, f"Verify {app.name}"),
        "app": app,
        "form": form,
        "report": report,
        "app_admin_url": reverse("admin:accounts_appregistration_change", args=[app.pk]),
    }
    return render(request, "connector/verify.html", context)
