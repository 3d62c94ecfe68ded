"""Client secrets that expire: threshold mail, check framework, check_secrets, banner."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
import time_machine
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django_q.models import Schedule

from accounts.models import AppRegistration
from connector.models import Server
from connector.services.expiry import (
    EXPIRED,
    SCHEDULE_FUNC,
    ensure_schedule,
    notify_expiring_secrets,
    secret_warnings,
)
from tests.fixtures.users import TEST_PASSWORD

START = dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.UTC)


def make_app(name: str = "contoso-signage", expires: dt.date | None = None) -> AppRegistration:
    return AppRegistration.objects.create(
        name=name,
        tenant="contoso.onmicrosoft.com",
        client_id="11111111-2222-3333-4444-555555555555",
        client_secret="fake-secret-do-not-use",
        secret_expires=expires,
    )


@pytest.fixture
def admins(settings: pytest.FixtureRequest) -> None:
    settings.ADMINS = [("Ops", "ops@example.com")]  # type: ignore[attr-defined]


@pytest.mark.django_db
def test_daily_task_mails_once_per_threshold_not_every_day(admins: None) -> None:
    make_app(expires=(START + dt.timedelta(days=40)).date())
    sent_on: list[tuple[int, str]] = []
    with time_machine.travel(START, tick=False) as traveller:
        for day in range(46):
            before = len(mail.outbox)
            notify_expiring_secrets()
            notify_expiring_secrets()  # a second run the same day sends nothing more
            if len(mail.outbox) > before:
                assert len(mail.outbox) == before + 1
                sent_on.append((day, mail.outbox[-1].subject))
            traveller.shift(dt.timedelta(days=1))
    assert [day for day, _ in sent_on] == [10, 33, 39, 41]
    assert "expires in 30 days" in sent_on[0][1]
    assert "expires in 7 days" in sent_on[1][1]
    assert "expires tomorrow" in sent_on[2][1]
    assert "expired on" in sent_on[3][1]
    assert all(message.to == ["ops@example.com"] for message in mail.outbox)
    assert AppRegistration.objects.get().expiry_notified_days == EXPIRED


@pytest.mark.django_db
def test_mail_names_the_servers_and_never_the_secret(admins: None) -> None:
    app = make_app(expires=(START + dt.timedelta(days=5)).date())
    Server.objects.create(
        server_id="o365", type="graph", base_uri="https://graph.microsoft.com", app_registration=app
    )
    with time_machine.travel(START, tick=False):
        summary = notify_expiring_secrets()
    assert "contoso-signage" in summary
    [message] = mail.outbox
    assert "expires in 5 days" in message.subject
    assert "o365" in message.body
    assert "Certificates & secrets" in message.body
    assert "fake-secret" not in message.body + message.subject


@pytest.mark.django_db
def test_renewed_secret_starts_the_thresholds_again(admins: None) -> None:
    app = make_app(expires=(START + dt.timedelta(days=3)).date())
    with time_machine.travel(START, tick=False) as traveller:
        notify_expiring_secrets()
        assert AppRegistration.objects.get().expiry_notified_days == 7
        # The administrator enters a new secret valid for a year: no mail, bookkeeping reset.
        app.secret_expires = (START + dt.timedelta(days=365)).date()
        app.save()
        notify_expiring_secrets()
        assert AppRegistration.objects.get().expiry_notified_days is None
        traveller.shift(dt.timedelta(days=335))
        notify_expiring_secrets()
    assert len(mail.outbox) == 2
    assert "expires in 30 days" in mail.outbox[1].subject


@pytest.mark.django_db
def test_secret_refused_as_expired_counts_as_expired(admins: None) -> None:
    app = make_app(expires=(START + dt.timedelta(days=200)).date())
    AppRegistration.objects.filter(pk=app.pk).update(secret_expired_at=START)
    with time_machine.travel(START, tick=False):
        [warning] = secret_warnings()
        notify_expiring_secrets()
    assert warning.status == "expired"
    assert "refused as expired" in warning.message
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_without_admins_nothing_is_recorded(settings: pytest.FixtureRequest) -> None:
    settings.ADMINS = []  # type: ignore[attr-defined]
    make_app(expires=(START + dt.timedelta(days=2)).date())
    with time_machine.travel(START, tick=False):
        summary = notify_expiring_secrets()
    assert "ADMINS is empty" in summary
    assert mail.outbox == []
    assert AppRegistration.objects.get().expiry_notified_days is None


@pytest.mark.django_db
def test_daily_schedule_is_created_once() -> None:
    # migrate (post_migrate) made it already, beside the refresh dispatcher's
    assert Schedule.objects.filter(func=SCHEDULE_FUNC).count() == 1
    ensure_schedule()
    ensure_schedule()
    [schedule] = Schedule.objects.filter(func=SCHEDULE_FUNC)
    assert schedule.schedule_type == Schedule.DAILY


@pytest.mark.django_db
def test_manage_py_check_warns_of_expiring_and_expired_secrets() -> None:
    make_app("soon", expires=(START + dt.timedelta(days=10)).date())
    make_app("gone", expires=(START - dt.timedelta(days=1)).date())
    make_app("fine", expires=(START + dt.timedelta(days=90)).date())
    err = StringIO()
    with time_machine.travel(START, tick=False):
        call_command("check", stdout=StringIO(), stderr=err)
    output = err.getvalue()
    assert "connector.W001" in output and "soon expires in 10 days" in output
    assert "connector.W002" in output and "gone expired on 2026-10-31" in output
    assert "fine" not in output


@pytest.mark.django_db
def test_check_secrets_lists_days_left_and_fails_when_one_expired() -> None:
    make_app("soon", expires=(START + dt.timedelta(days=10)).date())
    make_app("nodate")
    out = StringIO()
    with time_machine.travel(START, tick=False):
        call_command("check_secrets", stdout=out)
    lines = out.getvalue().splitlines()
    assert any(line.split()[:4] == ["soon", "2026-11-11", "10", "expiring"] for line in lines)
    assert any(line.split()[:4] == ["nodate", "unknown", "-", "unknown"] for line in lines)

    make_app("gone", expires=(START - dt.timedelta(days=3)).date())
    with time_machine.travel(START, tick=False), pytest.raises(CommandError) as raised:
        call_command("check_secrets", stdout=StringIO())
    assert raised.value.returncode == 1
    assert "gone" in str(raised.value)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("days", "banner"),
    [
        (40, None),
        (10, "ews-banner-expiring"),
        (0, "ews-banner-expiring"),
        (-2, "ews-banner-expired"),
    ],
)
def test_admin_pages_show_the_expiry_banner_from_30_days(
    client: Client, admin_user: object, days: int, banner: str | None
) -> None:
    make_app(expires=(START + dt.timedelta(days=days)).date())
    client.login(username="admin", password=TEST_PASSWORD)
    with time_machine.travel(START, tick=False):
        html = client.get("/admin/").content.decode()
    if banner is None:
        assert "ews-banner" not in html
    else:
        assert f'class="ews-banner {banner}"' in html
        assert "contoso-signage" in html
        assert "fake-secret" not in html


@pytest.mark.django_db
def test_banner_warning_days_follow_the_setting(
    client: Client, admin_user: object, settings: pytest.FixtureRequest
) -> None:
    settings.SECRET_EXPIRY_WARNING_DAYS = 60  # type: ignore[attr-defined]
    make_app(expires=(START + dt.timedelta(days=45)).date())
    client.login(username="admin", password=TEST_PASSWORD)
    with time_machine.travel(START, tick=False):
        html = client.get("/admin/").content.decode()
    assert "expires in 45 days" in html


@pytest.mark.django_db
def test_login_page_shows_no_banner(client: Client) -> None:
    make_app(expires=(START + dt.timedelta(days=3)).date())
    with time_machine.travel(START, tick=False):
        html = client.get("/admin/login/").content.decode()
    assert "ews-banner" not in html
