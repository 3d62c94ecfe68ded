"""Delegated sign-in end to end: Graph and EWS calendars read with the signed-in account.

The service account signs in once through the admin (the fake identity platform's
login form); a Graph calendar and an EWS calendar are then refreshed with its
delegated tokens, against fakes that refuse what Exchange Online refuses: an
impersonation header on a delegated token (EWS), another user's calendar without
Calendars.Read.Shared or without rights on it (Graph). When the identity platform
revokes the sign-in, the first failure of every calendar says "Re-authentication
needed", ADMINS get one mail, the feeds that send their cache on errors still
answer 200, and signing in again brings the refreshes back.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import time_machine
from django.contrib.auth.models import User
from django.core import mail
from django.db import connection
from django.test import Client
from django.utils import timezone

from accounts.models import AppRegistration
from accounts.tokens import acquire_token, finish_sign_in, start_sign_in
from connector.core.errors import SourceError
from connector.core.records import Window
from connector.models import Calendar, RefreshStatus, Server
from connector.pipeline.build import source_for
from connector.services.refresh import FEED_RETRY_FIRST
from tests.fakes.ews import FakeExchange
from tests.fakes.graph import FakeGraph
from tests.fakes.identity import FakeIdentityPlatform
from tests.fixtures.feed import parse_feed, vevents
from tests.fixtures.identity import DELEGATED_ACCOUNT as ACCOUNT
from tests.fixtures.identity import GRAPH_CLIENT_ID, sign_in_answer, sign_in_location
from tests.fixtures.users import TEST_PASSWORD

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("refresh_threads_joined"),
]

ROOM_A, ROOM_B = "room-a@contoso.com", "room-b@contoso.com"
PERIOD = dt.timedelta(seconds=301)  # past the calendars' refresh period (300 s)


def accept_delegated_tokens(ews: FakeExchange, identity: FakeIdentityPlatform) -> None:
    """The fake EWS takes the identity platform's tokens and knows whose they are."""
    ews.token_validator = lambda token: identity.is_valid_token(token, audience=ews.url)

    def owner(token: str) -> tuple[str, frozenset[str]]:
        issued = identity.token_info(token)
        return (issued.account, issued.scopes) if issued else ("", frozenset())

    ews.token_owner = owner


@pytest.fixture
def site(
    delegated_app: AppRegistration,
    fake_identity: FakeIdentityPlatform,
    fake_graph: FakeGraph,
    fake_ews: FakeExchange,
    make_calendar: Any,
) -> dict[str, Any]:
    """A Graph server and an EWS server using the delegated app; a calendar on each."""
    accept_delegated_tokens(fake_ews, fake_identity)
    # In Entra ID: both delegated permissions, with admin consent.
    fake_identity.consent(
        GRAPH_CLIENT_ID,
        f"{fake_graph.url}/Calendars.Read.Shared",
        f"{fake_ews.url}/EWS.AccessAsUser.All",
    )
    # In Exchange: the service account may read room-a (EWS) and room-b (Graph).
    fake_ews.grant(ACCOUNT, ROOM_A)
    fake_graph.share(ACCOUNT, ROOM_B)
    graph = Server.objects.create(
        server_id="graph",
        type=Server.Type.GRAPH,
        base_uri=fake_graph.url,
        app_registration=delegated_app,
    )
    ews = Server.objects.create(
        server_id="exchange-online",
        type=Server.Type.EWS,
        base_uri=fake_ews.url,
        app_registration=delegated_app,
    )
    return {
        "graph": make_calendar(
            "graph-room", server=graph, resources=(ROOM_B,), send_cache_on_server_error=True
        ),
        "ews": make_calendar(
            "ews-room", server=ews, resources=(ROOM_A,), send_cache_on_server_error=True
        ),
        "ews_strict": make_calendar("ews-strict", server=ews, resources=(ROOM_A,)),
    }


def admin_client(admin_user: User) -> Client:
    client = Client()
    assert client.login(username=admin_user.username, password=TEST_PASSWORD)
    return client


def sign_in_through_the_admin(
    client: Client, app: AppRegistration, identity: FakeIdentityPlatform
) -> str:
    """Click the app registration's sign-in button, fill in the login form, come back."""
    start = client.get(f"/accounts/app-registrations/{app.pk}/sign-in/")
    assert start.status_code == 302
    back = urlsplit(sign_in_location(identity, start["Location"]))
    done = client.get(f"{back.path}?{back.query}", follow=True)
    assert done.status_code == 200
    return done.content.decode()


def database_copy(tmp_path: Path) -> bytes:
    """The database as SQLite writes it to a file (VACUUM INTO: every page, no cache)."""
    target = tmp_path / "copy.sqlite3"
    with connection.cursor() as cursor:
        cursor.execute("VACUUM INTO %s", [str(target)])
    return target.read_bytes()


def feed(client: Client, calendar: Calendar) -> Any:
    return client.get(f"/ical/{calendar.calendar_id}.ics")


def test_delegated_sign_in_reads_graph_and_ews_then_survives_a_revoked_sign_in(
    settings: Any,
    tmp_path: Path,
    admin_user: User,
    site: dict[str, Any],
    delegated_app: AppRegistration,
    fake_identity: FakeIdentityPlatform,
    fake_graph: FakeGraph,
    fake_ews: FakeExchange,
) -> None:
    settings.ADMINS = [("Ops", "ops@example.com")]
    admin = admin_client(admin_user)
    page = sign_in_through_the_admin(admin, delegated_app, fake_identity)
    assert f"Signed in as {ACCOUNT}" in page

    # -- both calendars read with the delegated token ----------------------------------
    players = Client()
    first = {name: feed(players, calendar) for name, calendar in site.items()}
    assert all(answer.status_code == 200 for answer in first.values()), {
        name: answer.content[:300] for name, answer in first.items()
    }
    assert vevents(parse_feed(first["graph"].content))
    assert vevents(parse_feed(first["ews"].content))
    finds = [op for op in fake_ews.ops if op.operation == "FindItem"]
    assert finds and all(op.outcome == "ok" for op in finds)
    # As a delegate: the signed-in account, no ExchangeImpersonation header.
    assert {(op.caller, op.impersonate, op.mailboxes) for op in finds} == {(ACCOUNT, "", (ROOM_A,))}
    graph_reads = fake_graph.calendar_view_requests(ROOM_B)
    assert graph_reads
    token = graph_reads[0].header("authorization")[7:]
    assert fake_identity.token_info(token).scopes == {"Calendars.Read.Shared"}
    assert fake_identity.token_info(token).account == ACCOUNT

    # -- the refresh token is stored encrypted ----------------------------------------
    stored = AppRegistration.objects.get(pk=delegated_app.pk).refresh_token
    assert stored.startswith("fake-refresh-")
    on_disk = database_copy(tmp_path)
    assert ACCOUNT.encode() in on_disk  # the scan reads where the data is
    issued = [*fake_identity.refresh_tokens, *fake_identity.revoked_refresh_tokens]
    assert stored in issued
    for refresh_token in issued:
        assert refresh_token.encode() not in on_disk

    # -- an administrator revokes the service account's sessions ----------------------
    fake_identity.revoke_sign_in(ACCOUNT)
    token_requests = fake_identity.token_requests()
    with time_machine.travel(timezone.now() + PERIOD, tick=True):
        second = {name: feed(players, calendar) for name, calendar in site.items()}
    assert second["graph"].status_code == 200
    assert second["graph"].content == first["graph"].content
    assert second["ews"].status_code == 200
    assert second["ews"].content == first["ews"].content
    assert second["ews_strict"].status_code == 502
    for calendar in site.values():
        status = RefreshStatus.objects.get(calendar=calendar)
        assert status.last_error.startswith("Re-authentication needed"), status.last_error
        assert status.last_error_code == "reauth-needed"
        assert status.consecutive_failures == 1
    # One refresh-token request found it out; the other calendars did not ask again.
    assert fake_identity.token_requests() == token_requests + 1
    assert len(mail.outbox) == 1
    assert "Re-authentication needed" in mail.outbox[0].subject
    assert AppRegistration.objects.get(pk=delegated_app.pk).reauth_needed

    status_page = admin.get("/status/").content.decode()
    assert "Re-authentication needed" in status_page
    banner = admin.get("/admin/").content.decode()
    assert "Re-authentication needed" in banner
    assert f'href="/accounts/app-registrations/{delegated_app.pk}/sign-in/">Re-authenticate' in (
        banner
    )
    assert "fake-refresh-" not in status_page + banner

    # A later round: still one incident, one mail.
    later = PERIOD + FEED_RETRY_FIRST + dt.timedelta(seconds=1)
    with time_machine.travel(timezone.now() + later, tick=True):
        assert feed(players, site["ews"]).status_code == 200
        assert feed(players, site["graph"]).status_code == 200
    assert len(mail.outbox) == 1

    # -- re-authenticating restores the refreshes -------------------------------------
    fake_ews.events(ROOM_A)[0].subject = "Board meeting (moved)"
    page = sign_in_through_the_admin(admin, delegated_app, fake_identity)
    assert f"Signed in as {ACCOUNT}" in page
    assert not AppRegistration.objects.get(pk=delegated_app.pk).reauth_needed
    much_later = later + PERIOD + 4 * FEED_RETRY_FIRST
    with time_machine.travel(timezone.now() + much_later, tick=True):
        third = {name: feed(players, calendar) for name, calendar in site.items()}
    assert all(answer.status_code == 200 for answer in third.values())
    assert b"Board meeting (moved)" in third["ews_strict"].content
    for calendar in site.values():
        status = RefreshStatus.objects.get(calendar=calendar)
        assert status.consecutive_failures == 0
        assert status.last_success > status.last_error_at
    assert "Re-authentication needed" not in admin.get("/admin/").content.decode()
    assert len(mail.outbox) == 1


def test_the_fake_ews_refuses_impersonation_with_a_delegated_token(
    site: dict[str, Any],
    delegated_app: AppRegistration,
    fake_identity: FakeIdentityPlatform,
    fake_ews: FakeExchange,
    admin_user: User,
) -> None:
    """What a delegated token meets when it impersonates, as exchangelib did by default."""
    sign_in_through_the_admin(admin_client(admin_user), delegated_app, fake_identity)
    app = AppRegistration.objects.get(pk=delegated_app.pk)
    token = acquire_token(app, f"{fake_ews.url}/EWS.AccessAsUser.All").token
    envelope = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
        'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">'
        '<s:Header><t:RequestServerVersion Version="Exchange2016"/>'
        "<t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>"
        f"{ROOM_A}</t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation>"
        "</s:Header><s:Body><m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape>"
        '</m:FolderShape><m:FolderIds><t:DistinguishedFolderId Id="calendar">'
        f"<t:Mailbox><t:EmailAddress>{ROOM_A}</t:EmailAddress></t:Mailbox>"
        "</t:DistinguishedFolderId></m:FolderIds></m:GetFolder></s:Body></s:Envelope>"
    )
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/xml; charset=utf-8"}
    url = f"{fake_ews.url}/EWS/Exchange.asmx"
    denied = requests.post(url, data=envelope.encode(), headers=headers, timeout=10)
    assert denied.status_code == 500 and b"ErrorImpersonateUserDenied" in denied.content
    # The same request as a delegate (no impersonation header) reads the room.
    delegate = envelope.replace(
        envelope[envelope.index("<t:ExchangeImpersonation>") : envelope.index("</s:Header>")], ""
    )
    allowed = requests.post(url, data=delegate.encode(), headers=headers, timeout=10)
    assert allowed.status_code == 200 and b'ResponseClass="Success"' in allowed.content
    # A room the account has no rights on is denied.
    other = delegate.replace(ROOM_A, ROOM_B)
    refused = requests.post(url, data=other.encode(), headers=headers, timeout=10)
    assert b"ErrorAccessDenied" in refused.content


def test_graph_refuses_a_delegated_token_without_calendars_read_shared(
    site: dict[str, Any],
    delegated_app: AppRegistration,
    fake_identity: FakeIdentityPlatform,
    fake_graph: FakeGraph,
) -> None:
    fake_identity.consent(GRAPH_CLIENT_ID, f"{fake_graph.url}/Calendars.Read")
    flow_scope = f"{fake_graph.url}/Calendars.Read"
    flow = start_sign_in(delegated_app, "https://signage.example.com/accounts/sign-in/done/")
    finish_sign_in(delegated_app, flow, sign_in_answer(fake_identity, flow["auth_uri"]))
    own_only = acquire_token(delegated_app, flow_scope).token
    shared = acquire_token(delegated_app, f"{fake_graph.url}/Calendars.Read.Shared").token
    window = "startDateTime=2026-03-02T00:00:00&endDateTime=2026-03-09T00:00:00"

    def read(room: str, token: str) -> requests.Response:
        return requests.get(
            f"{fake_graph.url}/v1.0/users/{room}/calendarView?{window}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )

    refused = read(ROOM_B, own_only)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "ErrorAccessDenied"
    assert read(ROOM_B, shared).status_code == 200
    not_shared = read(ROOM_A, shared)  # Calendars.Read.Shared, but no rights on room-a
    assert not_shared.status_code == 403


def test_a_room_without_rights_names_the_fix_for_a_delegated_sign_in(
    site: dict[str, Any],
    delegated_app: AppRegistration,
    fake_identity: FakeIdentityPlatform,
    admin_user: User,
) -> None:
    sign_in_through_the_admin(admin_client(admin_user), delegated_app, fake_identity)
    now = timezone.now()
    window = Window(now, now + dt.timedelta(days=7))
    for calendar, room in ((site["ews"], ROOM_B), (site["graph"], ROOM_A)):
        source = source_for(Calendar.objects.get(pk=calendar.pk))
        with pytest.raises(SourceError) as excinfo:
            source.fetch(room, window)
        error = excinfo.value
        assert error.code == "ErrorAccessDenied", error.as_text()
        assert ACCOUNT in error.hint and "Reviewer" in error.hint
        assert "full_access_as_app" not in error.hint
