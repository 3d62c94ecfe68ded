"""gssnegotiate is Kerberos: a room read through a real MIT KDC on loopback.

The application asks the KDC for the service account's ticket with its
password (no keytab, no kinit), then authenticates to a fake EWS that accepts
SPNEGO/Kerberos with its service keytab, as IIS does. Each way Kerberos fails
in the field (clock skew, unknown account, wrong password, no KDC, no SPN for
the host) reaches the administrator as a named failure with its fix, on the
console too.
"""

from __future__ import annotations

import datetime as dt
import socket
import time
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from accounts.models import ServiceAccount
from connector.core.errors import SourceError
from connector.core.records import Window
from connector.models import Calendar, Resource, Server
from connector.sources import open_source
from connector.sources.ews import reset_pool
from tests.fakes.ews import FakeExchange
from tests.fakes.rooms import FakeEvent
from tests.fixtures.kerberos import REALM, Kdc, free_port, running_kdc

ROOM = "room-k@contoso.com"
PASSWORD = "fake-kerberos-password"


def week() -> Window:
    start = dt.datetime.combine(dt.date.today(), dt.time(), tzinfo=dt.UTC)
    return Window(start, start + dt.timedelta(days=7))


@pytest.fixture(scope="module")
def kdc() -> Iterator[Kdc]:
    with running_kdc() as running:
        running.add_user("svc-rooms", PASSWORD)
        running.add_service("127.0.0.1")
        yield running


@pytest.fixture
def exchange(kdc: Kdc) -> Iterator[FakeExchange]:
    with FakeExchange() as fake:
        fake.auth.keytab = kdc.keytab
        fake.add_user(f"svc-rooms@{REALM}", "", "kerberos", mailbox="", rooms=[ROOM])
        add_meeting(fake)
        yield fake
    reset_pool()


def add_meeting(fake: FakeExchange) -> None:
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(hours=2)
    fake.add_mailbox(ROOM, [FakeEvent("Kerberos review", start, start + dt.timedelta(hours=1))])


def server_for(fake: FakeExchange, username: str, password: str = PASSWORD) -> Server:
    account = ServiceAccount.objects.create(name="svc", username=username, password=password)
    return Server.objects.create(
        server_id="onprem",
        type=Server.Type.EWS,
        base_uri=fake.url,
        http_scheme="gssnegotiate",
        service_account=account,
    )


def kerberos_settings(kdc: Kdc | None = None, **more: object) -> override_settings:
    return override_settings(
        KERBEROS_REALM=REALM, KERBEROS_KDC=[kdc.address if kdc else "127.0.0.1:1"], **more
    )


def read(server: Server) -> list[str]:
    try:
        return [record.subject for record in open_source(server).fetch(ROOM, week())]
    finally:
        reset_pool()


def failure(server: Server) -> SourceError:
    with pytest.raises(SourceError) as caught:
        read(server)
    return caught.value


def test_a_room_is_read_with_a_ticket_from_the_kdc(
    db: None, kdc: Kdc, exchange: FakeExchange
) -> None:
    server = server_for(exchange, f"svc-rooms@{REALM.lower()}")
    with kerberos_settings(kdc):
        assert read(server) == ["Kerberos review"]
    sent = [request.header("Authorization") for request in exchange.soap_requests()]
    # Kerberos, not NTLM inside Negotiate: a SPNEGO token (ASN.1, 0x60), never "TlRMTVNT".
    assert any(header.startswith("Negotiate YI") for header in sent)
    assert not any(header.startswith("Negotiate TlRM") for header in sent)


def test_the_domain_and_user_form_of_the_account_works_too(
    db: None, kdc: Kdc, exchange: FakeExchange
) -> None:
    server = server_for(exchange, "EXAMPLE\\svc-rooms")
    with kerberos_settings(kdc):
        assert read(server) == ["Kerberos review"]


def test_a_wrong_password_is_named(db: None, kdc: Kdc, exchange: FakeExchange) -> None:
    server = server_for(exchange, f"svc-rooms@{REALM}", password="fake-wrong-password")
    with kerberos_settings(kdc):
        error = failure(server)
    assert error.code == "KDC_ERR_PREAUTH_FAILED"
    assert "password" in error.message and "svc-rooms" in error.message
    assert "fake-wrong-password" not in error.as_text()


def test_an_unknown_account_is_named(db: None, kdc: Kdc, exchange: FakeExchange) -> None:
    server = server_for(exchange, f"nobody@{REALM}")
    with kerberos_settings(kdc):
        error = failure(server)
    assert error.code == "KDC_ERR_C_PRINCIPAL_UNKNOWN"
    assert "nobody@" in error.message and REALM in error.message
    assert "KERBEROS_REALM" in error.hint


def test_no_kdc_answering_is_named(db: None, kdc: Kdc, exchange: FakeExchange) -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    server = server_for(exchange, f"svc-rooms@{REALM}")
    with override_settings(KERBEROS_REALM=REALM, KERBEROS_KDC=[f"127.0.0.1:{port}"]):
        error = failure(server)
    assert error.code == "KDC_UNREACH"
    assert REALM in error.message
    assert "KERBEROS_KDC" in error.hint and "88" in error.hint


def test_a_host_without_a_service_principal_is_named(
    db: None, kdc: Kdc, exchange: FakeExchange
) -> None:
    # The KDC knows HTTP/127.0.0.1 only; the same Exchange reached as "localhost" has no SPN.
    server = server_for(exchange, f"svc-rooms@{REALM}")
    server.base_uri = exchange.url.replace("127.0.0.1", "localhost")
    server.save()
    with kerberos_settings(kdc):
        error = failure(server)
    assert error.code == "KDC_ERR_S_PRINCIPAL_UNKNOWN"
    assert "HTTP/localhost" in error.message
    assert "setspn -S HTTP/localhost" in error.hint


def test_clock_skew_is_named(db: None) -> None:
    # The domain's clocks run two hours ahead of this machine's: the KDC still issues the
    # ticket (the client adjusts to the KDC's time), Exchange refuses it with KRB_AP_ERR_SKEW.
    with running_kdc(offset="+2h") as skewed, FakeExchange() as fake:
        skewed.add_user("svc-rooms", PASSWORD)
        skewed.add_service("127.0.0.1")
        fake.auth.keytab = skewed.keytab
        fake.add_user(f"svc-rooms@{REALM}", "", "kerberos", mailbox="", rooms=[ROOM])
        add_meeting(fake)
        server = server_for(fake, f"svc-rooms@{REALM}")
        with kerberos_settings(skewed):
            error = failure(server)
    # Exchange finds the authenticator too far off, or the ticket's start in its future.
    assert error.code in ("KRB_AP_ERR_SKEW", "KRB_AP_ERR_TKT_NYV"), error.as_text()
    assert error.step == "connect"
    assert "clocks" in error.message
    assert "synchronise this machine with the domain controller" in error.hint


def test_a_long_running_process_asks_for_a_new_ticket_when_the_password_changes(
    db: None, kdc: Kdc, exchange: FakeExchange
) -> None:
    """A password changed in Active Directory is reported at the next new ticket, and the
    new password entered in the admin is used from the next read."""
    server = server_for(exchange, f"svc-rooms@{REALM}")
    with kerberos_settings(kdc):
        assert read(server) == ["Kerberos review"]
        kdc.set_password("svc-rooms", "fake-kerberos-password-2")
        try:
            error = failure(server)
            assert error.code == "KDC_ERR_PREAUTH_FAILED"
            account = server.service_account
            assert account is not None
            account.password = "fake-kerberos-password-2"
            account.save()
            server.refresh_from_db()
            assert read(server) == ["Kerberos review"]
        finally:
            kdc.set_password("svc-rooms", PASSWORD)


def test_a_ticket_about_to_expire_is_replaced_without_a_failed_read(
    db: None, kdc: Kdc, exchange: FakeExchange, caplog: pytest.LogCaptureFixture, monkeypatch
) -> None:
    """A process that runs for months outlives every ticket: the pooled connection asks the
    KDC again when its ticket has less than RENEW_BEFORE left, before a request fails."""
    from connector.sources.ews import kerberos

    kdc.add_user("svc-short", PASSWORD)
    kdc._admin('modprinc -maxlife "12 seconds" svc-short')
    exchange.add_user(f"svc-short@{REALM}", "", "kerberos", mailbox="", rooms=[ROOM])
    monkeypatch.setattr(kerberos, "RENEW_BEFORE", 4)
    server = server_for(exchange, f"svc-short@{REALM}")
    source = open_source(server)
    caplog.set_level("INFO", logger="connector.sources.ews.kerberos")
    try:
        with kerberos_settings(kdc):
            assert [r.subject for r in source.fetch(ROOM, week())] == ["Kerberos review"]
            time.sleep(9)  # 3 s of the ticket left: less than RENEW_BEFORE
            exchange.auth.forget_connections()  # a new connection needs a new handshake
            assert [r.subject for r in source.fetch(ROOM, week())] == ["Kerberos review"]
    finally:
        reset_pool()
    tickets = [r for r in caplog.records if r.getMessage().startswith("Kerberos: new ticket")]
    assert len(tickets) == 2


def test_the_console_command_names_the_kerberos_failure(
    db: None, kdc: Kdc, exchange: FakeExchange
) -> None:
    server = server_for(exchange, f"svc-rooms@{REALM}", password="fake-wrong-password")
    calendar = Calendar.objects.create(calendar_id="kerberos-room", server=server)
    Resource.objects.create(calendar=calendar, address=ROOM)
    out = StringIO()
    with kerberos_settings(kdc), pytest.raises(CommandError) as raised:
        call_command("test_calendar", "kerberos-room", stdout=out)
    assert "failed at the connection step" in str(raised.value)
    assert "refused the password of svc-rooms" in str(raised.value)
    text = out.getvalue()
    assert "enter the current password" in text
    assert "fake-wrong-password" not in text + str(raised.value)


def test_kerberos_settings_need_a_realm_for_the_kdcs(tmp_path: Path) -> None:
    from tests.helpers_process import clean_env, manage

    env = clean_env(tmp_path, KERBEROS_KDC=f"127.0.0.1:{free_port()}", TIME_ZONE="UTC")
    result = manage(env, "check")
    assert result.returncode != 0
    assert "KERBEROS_KDC needs KERBEROS_REALM" in result.stderr


def test_requests_gssapi_still_has_what_kerberos_auth_relies_on() -> None:
    import inspect

    requests_gssapi = pytest.importorskip("requests_gssapi")
    auth = requests_gssapi.HTTPSPNEGOAuth
    assert list(inspect.signature(auth.generate_request_header).parameters) == [
        "self",
        "response",
        "host",
        "is_preemptive",
    ]
    assert "num_401s" in inspect.getsource(auth.handle_response)
    assert isinstance(auth().context, dict)
