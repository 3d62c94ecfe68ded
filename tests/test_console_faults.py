"""Each fault of the fake Exchange: the console names the failing step as the step list
does, shows Exchange's own code beside the message, and gives the right hint."""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Callable
from operator import attrgetter

import pytest
from django.contrib.auth.models import User
from django.test import Client
from pytest_django.fixtures import Settings

from accounts.models import ServiceAccount
from connector.models import Calendar, Resource, Server, Snapshot
from tests.fakes import ews
from tests.fakes.base import Faults
from tests.fakes.ews import FakeExchange
from tests.fakes.identity import FakeIdentityPlatform
from tests.fixtures.exchange import EWS_DELEGATE
from tests.fixtures.identity import GRAPH_CLIENT_ID
from tests.fixtures.users import TEST_PASSWORD

# The console's fetch runs in a thread of its own, with its own database connection.
pytestmark = pytest.mark.django_db(transaction=True)


def wrong_password(request: pytest.FixtureRequest, fake: FakeExchange) -> Server:
    server: Server = request.getfixturevalue("ews_server")
    ServiceAccount.objects.filter(pk=server.service_account_id).update(
        password="fake-wrong-password"
    )
    return server


def access_denied(request: pytest.FixtureRequest, fake: FakeExchange) -> Server:
    fake.revoke(EWS_DELEGATE, "room-a@contoso.com")
    return request.getfixturevalue("ews_server")


def unknown_mailbox(request: pytest.FixtureRequest, fake: FakeExchange) -> Server:
    return request.getfixturevalue("ews_server")  # the calendar names nobody@contoso.com


def impersonation_denied(request: pytest.FixtureRequest, fake: FakeExchange) -> Server:
    fake.app_impersonation = False
    return request.getfixturevalue("ews_oauth_server")


def expired_secret(request: pytest.FixtureRequest, fake: FakeExchange) -> Server:
    identity: FakeIdentityPlatform = request.getfixturevalue("fake_identity")
    identity.expire_secret(GRAPH_CLIENT_ID)
    return request.getfixturevalue("ews_oauth_server")


def busy(request: pytest.FixtureRequest, fake: FakeExchange) -> Server:
    # Exchange asks to back off for ten minutes: longer than any refresh may wait.
    fake.inject_busy(count=20, back_off_ms=600_000)
    return request.getfixturevalue("ews_server")


def soap_fault(request: pytest.FixtureRequest, fake: FakeExchange) -> Server:
    fake.inject_fault("ErrorInternalServerError", "An internal server error occurred.", count=20)
    return request.getfixturevalue("ews_server")


def ews_blocked(request: pytest.FixtureRequest, fake: FakeExchange) -> Server:
    fake.ews_blocked = True
    return request.getfixturevalue("ews_oauth_server")


def endpoint_missing(request: pytest.FixtureRequest, fake: FakeExchange) -> Server:
    fake.ews_missing = True
    return request.getfixturevalue("ews_server")


def http_error(request: pytest.FixtureRequest, fake: FakeExchange) -> Server:
    fake.faults.fail_next(20, status=500)
    return request.getfixturevalue("ews_server")


def slow(request: pytest.FixtureRequest, fake: FakeExchange) -> Server:
    settings: Settings = request.getfixturevalue("settings")
    settings.EXCHANGE_REQUEST_TIMEOUT = 1
    fake.faults.latency = 1.5
    return request.getfixturevalue("ews_server")


def down(request: pytest.FixtureRequest, fake: FakeExchange) -> Server:
    fake.faults.down = True
    return request.getfixturevalue("ews_server")


def untrusted_certificate(request: pytest.FixtureRequest, fake: FakeExchange) -> Server:
    fake.faults.untrusted_certificate = True
    return request.getfixturevalue("ews_server")


CASES: list[tuple[str, Callable[[pytest.FixtureRequest, FakeExchange], Server], str, str, str]] = [
    # name (a fault in ews.FAULTS, or of the identity platform), set-up, failing step (the
    # start of its title in the step list), the upstream's own code, words of the hint
    ("wrong password", wrong_password, "Connect to", "HTTP 401", "Check the username and password"),
    ("access denied", access_denied, "Fetch ", "ErrorAccessDenied", "Add-MailboxPermission"),
    (
        "unknown mailbox",
        unknown_mailbox,
        "Fetch ",
        "ErrorNonExistentMailbox",
        "primary SMTP address",
    ),
    (
        "impersonation denied",
        impersonation_denied,
        "Connect to",
        "ErrorImpersonateUserDenied",
        "full_access_as_app",
    ),
    ("expired secret", expired_secret, "Token from", "AADSTS7000222", "New client secret"),
    ("busy", busy, "Connect to", "ErrorServerBusy", "throttling"),
    ("soap fault", soap_fault, "Connect to", "ErrorInternalServerError", "event log"),
    ("ews blocked", ews_blocked, "Connect to", "HTTP 403", "EwsAllowedAppIDs"),
    ("endpoint missing", endpoint_missing, "Connect to", "HTTP 404", "/EWS/Exchange.asmx"),
    ("http error", http_error, "Connect to", "HTTP 500", "MSExchangeServicesAppPool"),
    ("slow", slow, "Connect to", "TimeoutError", "EXCHANGE_REQUEST_TIMEOUT"),
    ("down", down, "Connect to", "RemoteDisconnected", "Exchange is down, or a firewall"),
    (
        "untrusted certificate",
        untrusted_certificate,
        "Connect to",
        "SSLCertVerificationError",
        "REQUESTS_CA_BUNDLE",
    ),
]


@pytest.mark.parametrize(
    ("setup", "step", "code", "hint"),
    [pytest.param(setup, step, code, hint, id=name) for name, setup, step, code, hint in CASES],
)
def test_console_shows_the_failing_step_and_hint(
    request: pytest.FixtureRequest,
    client: Client,
    staff_user: User,
    fake_ews: FakeExchange,
    setup: Callable[[pytest.FixtureRequest, FakeExchange], Server],
    step: str,
    code: str,
    hint: str,
) -> None:
    server = setup(request, fake_ews)
    calendar = Calendar.objects.create(calendar_id="lobby", server=server)
    room = "nobody@contoso.com" if setup is unknown_mailbox else "room-a@contoso.com"
    Resource.objects.create(calendar=calendar, address=room)
    client.login(username="staff", password=TEST_PASSWORD)

    page = client.get("/console/lobby/")
    text = htmllib.unescape(b"".join(page.streaming_content).decode())
    assert page.status_code == 200
    assert 'data-outcome="failing"' in text
    failed = re.search(
        r'Failed at <span class="ews-failed-step">(.*?)</span>:</strong>(.*?)'
        r'<code class="ews-code"[^>]*>(.*?)</code>',
        text,
        re.S,
    )
    assert failed is not None, text[-4000:]
    title, shown_code = failed.group(1), failed.group(3)
    # The headline names a failed step of the step list, by its title there.
    failed_titles = re.findall(
        r'data-ok="false">.*?<span class="ews-step-title">(.*?)</span>', text, re.S
    )
    assert title in failed_titles
    assert (title[: len(step)], shown_code) == (step, code)
    assert hint in text
    assert "fake-password" not in text and "fake-secret" not in text and "fake-wrong" not in text
    assert not Snapshot.objects.exists()


def test_every_fault_of_the_fake_is_covered(fake_ews: FakeExchange) -> None:
    # The switches the fake has: its inject_* methods and the fields of its Faults
    # (take_status and reset are how the server and the fixtures use them, not faults).
    switches = {name for name in dir(FakeExchange) if name.startswith("inject_")} | {
        f"faults.{name}"
        for name in dir(Faults())
        if not name.startswith("_") and name not in {"take_status", "reset"}
    }
    registered = {fault.switch for fault in ews.FAULTS.values() if fault.switch}
    assert switches - registered == set(), "switches of the fake missing from its FAULTS"
    for switch in registered:
        attrgetter(switch)(fake_ews)  # each registered switch is a member of the fake
    # The cases the console test above really runs, from its own parametrize mark.
    (parametrize,) = [
        mark
        for mark in getattr(test_console_shows_the_failing_step_and_hint, "pytestmark", [])
        if mark.name == "parametrize"
    ]
    covered = {case.id for case in parametrize.args[1]}

    assert set(ews.FAULTS) - covered == set(), "faults of the fake without a console case"
