"""Verify: what a credential's token grants against what its servers need, then a real read.

Against the fake identity platform (JWT-shaped tokens whose ``roles`` claim is
the app's consented permissions) and the fake Graph and EWS.
"""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import AppRegistration
from connector.models import Calendar, Resource, Server
from connector.services.verify import MISSING, OK, WARNING, verify_app_registration
from tests.fakes.graph import FakeGraph
from tests.fakes.identity import FakeIdentityPlatform
from tests.fixtures.identity import GRAPH_CLIENT_ID

ORDINARY = "alice@contoso.com"


@pytest.fixture
def graph_calendar(graph_server: Server) -> Calendar:
    calendar = Calendar.objects.create(calendar_id="lobby", server=graph_server)
    Resource.objects.create(calendar=calendar, address="room-a@contoso.com", position=0)
    return calendar


def statuses(report: Any) -> list[tuple[str, str]]:
    return [(line.status, line.text) for line in report.all_lines]


def test_verify_reports_a_missing_calendars_read_for_a_graph_server_whose_app_lacks_it(
    app_registration: AppRegistration,
    graph_calendar: Calendar,
    fake_identity: FakeIdentityPlatform,
    fake_graph: FakeGraph,
) -> None:
    fake_identity.set_roles(GRAPH_CLIENT_ID, ["User.Read.All"])
    fake_graph.revoke(GRAPH_CLIENT_ID, "Calendars.Read")

    report = verify_app_registration(app_registration)

    assert not report.ok
    missing = [line for line in report.all_lines if line.status == MISSING]
    assert any(
        "Calendars.Read (application permission of Microsoft Graph) is missing" in line.text
        and "Grant admin consent" in line.fix
        and "Application Calendars.Read" in line.fix
        for line in missing
    ), statuses(report)
    assert any("Reading room-a@contoso.com failed" in line.text for line in missing)
    assert report.servers[0].granted == ["User.Read.All"]  # what the token's roles say

    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("verify_credentials", "contoso-signage", stdout=out, stderr=err)
    assert raised.value.returncode == 1
    assert "✗ Calendars.Read (application permission of Microsoft Graph) is missing" in (
        out.getvalue()
    )
    assert "decoded without verifying" in out.getvalue()


def test_verify_passes_when_the_token_grants_calendars_read_and_the_room_reads(
    app_registration: AppRegistration,
    graph_calendar: Calendar,
    fake_identity: FakeIdentityPlatform,
    fake_graph: FakeGraph,
) -> None:
    fake_identity.set_roles(GRAPH_CLIENT_ID, ["Calendars.Read"])
    posts = fake_identity.token_requests("client_credentials")

    report = verify_app_registration(app_registration)

    assert report.ok, statuses(report)
    texts = [text for status, text in statuses(report) if status == OK]
    assert any(
        "Calendars.Read (application permission of Microsoft Graph) is in" in t for t in texts
    )
    assert any(t.startswith("Read room-a@contoso.com") for t in texts)
    # "now": a token was really asked for, not taken from a cache.
    assert fake_identity.token_requests("client_credentials") >= posts + 1
    out = StringIO()
    call_command("verify_credentials", stdout=out)
    assert "✓ Calendars.Read" in out.getvalue()
    assert "Every credential has what its servers need." in out.getvalue()


def test_a_permission_granted_by_rbac_for_applications_is_proven_by_the_room_read(
    app_registration: AppRegistration,
    graph_calendar: Calendar,
    fake_identity: FakeIdentityPlatform,
    fake_graph: FakeGraph,
) -> None:
    # No tenant-wide grant (no role in the token); Exchange lets the app read the rooms.
    fake_identity.set_roles(GRAPH_CLIENT_ID, [])
    fake_graph.limit_to(GRAPH_CLIENT_ID, {"room-a@contoso.com", "room-b@contoso.com"})

    report = verify_app_registration(app_registration)

    assert report.ok, statuses(report)
    assert any("RBAC for Applications" in text for _, text in statuses(report))


def test_least_privilege_an_ordinary_mailbox_must_be_refused(
    app_registration: AppRegistration,
    graph_calendar: Calendar,
    fake_identity: FakeIdentityPlatform,
    fake_graph: FakeGraph,
) -> None:
    fake_identity.set_roles(GRAPH_CLIENT_ID, ["Calendars.Read"])
    fake_graph.rooms[ORDINARY] = []

    wide = verify_app_registration(app_registration, ordinary_mailbox=ORDINARY)
    assert not wide.ok
    assert any(
        status == MISSING and f"can read the ordinary mailbox {ORDINARY}" in text
        for status, text in statuses(wide)
    )

    fake_graph.limit_to(GRAPH_CLIENT_ID, {"room-a@contoso.com"})
    scoped = verify_app_registration(app_registration, ordinary_mailbox=ORDINARY)
    assert scoped.ok, statuses(scoped)
    assert (OK, f"Reading the ordinary mailbox {ORDINARY} is refused (least privilege).") in (
        statuses(scoped)
    )


@pytest.mark.parametrize(
    ("change", "code_words"),
    [
        (lambda identity, app: setattr(app, "client_secret", "fake-wrong-secret"), "AADSTS7000215"),
        (lambda identity, app: identity.expire_secret(GRAPH_CLIENT_ID), "AADSTS7000222"),
        (
            lambda identity, app: setattr(app, "client_id", "99999999-0000-0000-0000-000000000000"),
            "AADSTS700016",
        ),
        (lambda identity, app: setattr(app, "tenant", "nowhere.example"), "AADSTS90002"),
    ],
    ids=["wrong-secret", "expired-secret", "unknown-app", "unknown-tenant"],
)
def test_token_errors_carry_their_hints(
    app_registration: AppRegistration,
    graph_calendar: Calendar,
    fake_identity: FakeIdentityPlatform,
    fake_graph: FakeGraph,
    change: Any,
    code_words: str,
) -> None:
    change(fake_identity, app_registration)
    app_registration.save()

    report = verify_app_registration(app_registration)

    assert not report.ok
    line = next(line for line in report.all_lines if line.text.startswith("No token"))
    assert code_words in line.text
    assert line.fix  # the hint
    app_registration.refresh_from_db()
    assert code_words in app_registration.last_error  # the list's health column


def test_verify_over_ews_checks_full_access_as_app(
    ews_oauth_server: Server, fake_identity: FakeIdentityPlatform
) -> None:
    calendar = Calendar.objects.create(calendar_id="hall", server=ews_oauth_server)
    Resource.objects.create(calendar=calendar, address="room-b@contoso.com", position=0)

    fake_identity.set_roles(GRAPH_CLIENT_ID, [])
    fake_ews_denied = verify_app_registration(ews_oauth_server.app_registration)
    # The fake EWS lets the app impersonate (consented), so the room read proves it.
    assert fake_ews_denied.ok, statuses(fake_ews_denied)

    fake_identity.set_roles(GRAPH_CLIENT_ID, ["full_access_as_app"])
    report = verify_app_registration(ews_oauth_server.app_registration)
    assert report.ok
    assert any(
        "full_access_as_app (application permission of Office 365 Exchange Online) is in" in t
        for _, t in statuses(report)
    )


def test_a_credential_without_servers_is_a_warning_and_unknown_names_fail(
    app_registration: AppRegistration,
) -> None:
    report = verify_app_registration(app_registration)
    assert report.ok
    assert report.lines[0].status == WARNING

    with pytest.raises(CommandError) as raised:
        call_command("verify_credentials", "no-such-credential", stdout=StringIO())
    assert raised.value.returncode == 1
    assert "no such credential" in str(raised.value)
