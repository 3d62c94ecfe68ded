"""Every EWS failure reaches the admin as a SourceError with the fix, and no secret."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import requests
from exchangelib.errors import ErrorTimeoutExpired

from connector.core.errors import SourceError
from connector.core.records import Window
from connector.models import Server
from connector.sources import open_source
from connector.sources.ews.errors import ErrorContext, EwsHttpError, source_error
from tests.fakes.ews import FakeExchange
from tests.fixtures.exchange import EWS_DELEGATE, EWS_PASSWORD

ROOM_A = "room-a@contoso.com"


def week() -> Window:
    start = dt.datetime.combine(dt.date.today(), dt.time(), tzinfo=dt.UTC)
    return Window(start, start + dt.timedelta(days=7))


def failure(server: Server, resource: str = ROOM_A) -> SourceError:
    with pytest.raises(SourceError) as caught:
        open_source(server).fetch(resource, week())
    error = caught.value
    for secret in (EWS_PASSWORD, "fake-secret-graph", "fake-access-"):
        assert secret not in error.message and secret not in error.hint
    return error


def test_wrong_password_says_so(ews_server: Server, fake_ews: FakeExchange) -> None:
    account = ews_server.service_account
    account.password = "fake-wrong-password"
    account.save()

    error = failure(Server.objects.get(pk=ews_server.pk))

    assert error.code == "wrong-password"
    assert error.step == "connect"
    assert EWS_DELEGATE in error.message
    assert "password" in error.hint
    assert "fake-wrong-password" not in error.message + error.hint
    assert fake_ews.count_op("FindItem") == 0


def test_wrong_password_is_not_retried_as_throttling(
    ews_server: Server, fake_ews: FakeExchange
) -> None:
    # exchangelib's FaultTolerance takes a 401 for throttling and retries until max_wait.
    ews_server.service_account.password = "fake-wrong-password"
    ews_server.service_account.save()
    failure(Server.objects.get(pk=ews_server.pk))
    assert len(fake_ews.soap_requests()) <= 3  # one NTLM handshake, no retries


def test_basic_auth_to_exchange_online_is_explained() -> None:
    # outlook.office365.com cannot be faked on 127.0.0.1: the mapping is checked directly.
    ctx = ErrorContext(
        endpoint="https://outlook.office365.com/EWS/Exchange.asmx",
        host="outlook.office365.com",
        resource=ROOM_A,
        account=EWS_DELEGATE,
        oauth=False,
        exchange_online=True,
        scheme="basic",
    )
    error = source_error(EwsHttpError(401), ctx)
    assert error.code == "basic-auth-disabled"
    assert "2022" in error.hint and "graph" in error.hint


def test_a_room_without_rights_names_the_permission_to_add(
    ews_server: Server, fake_ews: FakeExchange
) -> None:
    error = failure(ews_server, "empty-room@contoso.com")

    assert error.code == "ErrorAccessDenied"
    assert error.resource == "empty-room@contoso.com"
    assert (
        "Add-MailboxPermission -Identity empty-room@contoso.com -User delegate@contoso.com "
        "-AccessRights FullAccess" in error.hint
    )
    assert "Add-MailboxFolderPermission -Identity empty-room@contoso.com:\\Calendar" in error.hint


def test_an_unknown_mailbox_is_a_wrong_address(ews_server: Server, fake_ews: FakeExchange) -> None:
    error = failure(ews_server, "room-z@contoso.com")
    assert error.code == "ErrorNonExistentMailbox"
    assert "room-z@contoso.com" in error.message
    assert "PrimarySmtpAddress" in error.hint


def test_impersonation_without_consent_names_full_access_as_app(
    ews_oauth_server: Server, fake_ews: FakeExchange
) -> None:
    fake_ews.app_impersonation = False
    error = failure(ews_oauth_server)
    assert error.code == "ErrorImpersonateUserDenied"
    assert "full_access_as_app" in error.hint and "admin consent" in error.hint


def test_ews_blocked_in_exchange_online_says_allow_list_or_graph(
    ews_oauth_server: Server, fake_ews: FakeExchange
) -> None:
    fake_ews.ews_blocked = True
    error = failure(ews_oauth_server)
    assert error.code == "ews-blocked"
    assert "Set-OrganizationConfig -EwsEnabled $true" in error.hint
    assert "EwsAllowedAppIDs" in error.hint
    assert "1 April 2027" in error.hint and "Graph" in error.hint


def test_a_refused_token_is_dropped_and_the_fetch_tries_once_with_a_new_one(
    ews_oauth_server: Server, fake_ews: FakeExchange, fake_identity: Any
) -> None:
    open_source(ews_oauth_server).fetch(ROOM_A, week())
    fake_identity.revoke_tokens()

    records = open_source(ews_oauth_server).fetch(ROOM_A, week())

    assert records
    assert fake_identity.token_requests() == 2


def test_a_token_exchange_keeps_refusing_names_the_permission(
    ews_oauth_server: Server, fake_ews: FakeExchange, fake_identity: Any
) -> None:
    fake_ews.token_validator = lambda token: False

    error = failure(ews_oauth_server)

    assert error.code == "token-rejected"
    assert "full_access_as_app" in error.hint
    assert fake_identity.token_requests() == 2  # the first token, and one new one


def test_server_busy_beyond_the_refresh_deadline_fails_without_waiting(
    ews_server: Server, fake_ews: FakeExchange, settings: Any
) -> None:
    settings.REFRESH_TIMEOUT = 5
    open_source(ews_server).fetch(ROOM_A, week())
    fake_ews.inject_busy(1, back_off_ms=297_749)  # what Exchange Online sends: ~5 minutes

    error = failure(ews_server)

    assert error.code == "ErrorServerBusy" and error.retryable
    assert "throttling" in error.hint.lower()
    assert fake_ews.count_op("FindItem") == 2  # the first refresh, then one busy answer


def test_server_busy_retries_stop_at_the_refresh_deadline(
    ews_server: Server, fake_ews: FakeExchange, settings: Any
) -> None:
    settings.REFRESH_TIMEOUT = 1
    open_source(ews_server).fetch(ROOM_A, week())
    fake_ews.clear_log()
    fake_ews.inject_busy(100, back_off_ms=200)

    error = failure(ews_server)

    assert error.code == "ErrorServerBusy"
    attempts = fake_ews.count_op("FindItem")
    assert 3 <= attempts <= 6  # retried every 200 ms, for about a second, then gave up


def test_http_500_is_a_server_error(ews_server: Server, fake_ews: FakeExchange) -> None:
    open_source(ews_server).fetch(ROOM_A, week())
    fake_ews.faults.fail_next(1, status=500)
    error = failure(ews_server)
    assert error.code == "http-500" and error.retryable


def test_a_missing_ews_directory_is_a_wrong_base_uri(
    ews_server: Server, fake_ews: FakeExchange
) -> None:
    fake_ews.ews_missing = True
    error = failure(ews_server)
    assert error.code == "endpoint-not-found"
    assert "/EWS/Exchange.asmx" in error.hint


def test_a_server_that_is_down_cannot_be_connected_to(
    ews_server: Server, fake_ews: FakeExchange
) -> None:
    fake_ews.stop()
    error = failure(ews_server)
    assert error.code == "connection" and error.retryable


def test_tls_failure_is_reported(db: None, ews_service_account: Any) -> None:
    with FakeExchange(tls=False) as plain:  # https:// to a server that speaks plain HTTP
        server = Server.objects.create(
            server_id="tls",
            type=Server.Type.EWS,
            base_uri=plain.url.replace("http://", "https://"),
            service_account=ews_service_account,
        )
        error = failure(server)
    assert error.code == "tls"
    assert "certificate" in error.hint


def test_time_out_is_reported(ews_server: Server, fake_ews: FakeExchange, settings: Any) -> None:
    settings.EXCHANGE_REQUEST_TIMEOUT = 1
    open_source(ews_server).fetch(ROOM_A, week())
    fake_ews.work_time = 1.5
    error = failure(ews_server)
    assert error.code == "timeout" and error.retryable
    assert "EXCHANGE_REQUEST_TIMEOUT" in error.hint


def test_dns_failure_inside_exchangelib_is_reported() -> None:
    # Resolving a name would leave 127.0.0.1: the chain exchangelib raises is built here.
    ctx = ErrorContext(
        endpoint="https://mail.example.invalid/EWS/Exchange.asmx",
        host="mail.example.invalid",
        resource=ROOM_A,
        account=EWS_DELEGATE,
        oauth=False,
        exchange_online=False,
        scheme="ntlm",
    )
    try:
        try:
            raise requests.exceptions.ConnectionError(
                "NameResolutionError: Failed to resolve 'mail.example.invalid' "
                "([Errno -2] Name or service not known)"
            )
        except requests.exceptions.ConnectionError as exc:
            raise ErrorTimeoutExpired(f"Reraised from {exc!r}")  # as post_ratelimited does
    except ErrorTimeoutExpired as outer:
        error = source_error(outer, ctx)
    assert error.code == "dns"
    assert "mail.example.invalid" in error.message


def test_an_app_has_no_own_calendar(ews_oauth_server: Server, fake_ews: FakeExchange) -> None:
    error = failure(ews_oauth_server, "")
    assert error.code == "resource-required"


def test_an_own_calendar_needs_an_smtp_address(db: None, fake_ews: FakeExchange) -> None:
    from accounts.models import ServiceAccount

    fake_ews.add_user("CONTOSO\\monitor", "fake-password-monitor", "ntlm")
    account = ServiceAccount.objects.create(
        name="monitor", username="CONTOSO\\monitor", password="fake-password-monitor"
    )
    server = Server.objects.create(
        server_id="domain-user", type="ews", base_uri=fake_ews.url, service_account=account
    )
    error = failure(server, "")
    assert error.code == "resource-required"
    assert "user@domain" in error.hint


def test_a_domain_account_reads_rooms(db: None, fake_ews: FakeExchange) -> None:
    from accounts.models import ServiceAccount

    fake_ews.add_user("CONTOSO\\monitor", "fake-password-monitor", "ntlm", rooms=[ROOM_A])
    account = ServiceAccount.objects.create(
        name="monitor", username="CONTOSO\\monitor", password="fake-password-monitor"
    )
    server = Server.objects.create(
        server_id="domain-user", type="ews", base_uri=fake_ews.url, service_account=account
    )
    assert open_source(server).fetch(ROOM_A, week())
    assert {op.caller for op in fake_ews.ops} == {"contoso\\monitor"}


def test_a_password_stored_under_another_encryption_key_says_so(ews_server: Server) -> None:
    from cryptography.fernet import Fernet
    from django.db import connection

    from accounts.models import ServiceAccount

    other_key = Fernet(Fernet.generate_key())
    stored = "fernet:" + other_key.encrypt(EWS_PASSWORD.encode()).decode()
    with connection.cursor() as cursor:  # as a database restored with another key
        cursor.execute(
            f"UPDATE {ServiceAccount._meta.db_table} SET password = %s WHERE id = %s",
            [stored, ews_server.service_account_id],
        )
    server = Server.objects.get(pk=ews_server.pk)

    error = failure(server)

    assert error.code == "undecryptable-secret"
    assert "FIELD_ENCRYPTION_KEY" in error.hint


def test_no_row_of_the_error_table_is_hidden_by_an_earlier_one() -> None:
    # The table is read top down: a row below one for a base class of its exception (and
    # for the same or a broader context) would never be reached.
    from connector.sources.ews.errors import EWS_ERRORS, LAST_RESORT

    for table in (EWS_ERRORS, LAST_RESORT):
        for index, row in enumerate(table):
            for earlier in table[:index]:
                broader = earlier.when in ("", row.when)
                for kind in row.kinds:
                    caught_by = ", ".join(k.__name__ for k in earlier.kinds)
                    assert not (broader and issubclass(kind, earlier.kinds)), (
                        f"{kind.__name__} is caught first by the row for {caught_by}: "
                        "move its row above that one"
                    )
