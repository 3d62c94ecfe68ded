"""The fake Exchange speaks EWS as Exchange does, to unmodified exchangelib and requests."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
import requests
from exchangelib import BASIC, DELEGATE, NTLM, Account, Configuration, Credentials, EWSDateTime
from exchangelib.ewsdatetime import UTC
from exchangelib.protocol import close_connections
from requests_ntlm import HttpNtlmAuth

from tests.fakes.autodiscover import FakeAutodiscover
from tests.fakes.ews import EXCHANGE_2013, FakeExchange
from tests.fakes.ews_auth import md4
from tests.fixtures.exchange import EWS_DELEGATE, EWS_PASSWORD

PROBE = b"""<?xml version='1.0' encoding='utf-8'?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"
 xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"
 xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
<s:Header><t:RequestServerVersion Version="Exchange2016"/></s:Header>
<s:Body><m:ConvertId DestinationFormat="EntryId"><m:SourceIds>
<t:AlternateId Format="EwsId" Id="DUMMY" Mailbox="DUMMY"/></m:SourceIds></m:ConvertId></s:Body>
</s:Envelope>"""


@pytest.fixture(autouse=True)
def _no_cached_protocols() -> None:
    close_connections()


def _account(fake: FakeExchange, mailbox: str, password: str = EWS_PASSWORD, auth=NTLM) -> Account:
    config = Configuration(
        service_endpoint=fake.ews_url,
        credentials=Credentials(EWS_DELEGATE, password),
        auth_type=auth,
    )
    return Account(mailbox, config=config, access_type=DELEGATE, default_timezone=UTC)


def test_md4_matches_rfc_1320() -> None:
    assert md4(b"").hex() == "31d6cfe0d16ae931b73c59d7e0c089c0"
    assert md4(b"abc").hex() == "a448017aaf21d8525fc10ae87aa6729d"
    assert md4(b"message digest").hex() == "d9130a8164549fe818874806e1c7014b"


def test_ntlm_handshake_authenticates_the_connection_once(fake_ews: FakeExchange) -> None:
    with requests.Session() as session:
        session.auth = HttpNtlmAuth(f"\\{EWS_DELEGATE}", EWS_PASSWORD)
        first = session.post(fake_ews.ews_url, data=PROBE, headers={"Content-Type": "text/xml"})
        second = session.post(fake_ews.ews_url, data=PROBE, headers={"Content-Type": "text/xml"})
    assert first.status_code == second.status_code == 200
    assert b"ServerVersionInfo" in first.content
    logged = fake_ews.soap_requests()
    # anonymous 401, Negotiate (type 1), Authenticate (type 3) with the request; then the
    # second request rides on the authenticated connection without any header.
    assert [r.header("Authorization")[:4] for r in logged] == ["", "NTLM", "NTLM", ""]
    assert len({r.connection_id for r in logged}) == 1
    assert fake_ews.count_op("ConvertId") == 2


def test_ntlm_with_a_wrong_password_is_refused(fake_ews: FakeExchange) -> None:
    with requests.Session() as session:
        session.auth = HttpNtlmAuth(f"\\{EWS_DELEGATE}", "not-the-password")
        answer = session.post(fake_ews.ews_url, data=PROBE, headers={"Content-Type": "text/xml"})
    assert answer.status_code == 401
    assert fake_ews.count_op("ConvertId") == 0


def test_a_new_connection_must_authenticate_again(fake_ews: FakeExchange) -> None:
    with requests.Session() as session:
        session.auth = HttpNtlmAuth(f"\\{EWS_DELEGATE}", EWS_PASSWORD)
        session.post(fake_ews.ews_url, data=PROBE, headers={"Content-Type": "text/xml"})
    anonymous = requests.post(fake_ews.ews_url, data=PROBE, headers={"Content-Type": "text/xml"})
    assert anonymous.status_code == 401
    assert "NTLM" in anonymous.headers["WWW-Authenticate"]


def test_basic_and_digest_check_the_password() -> None:
    with FakeExchange() as fake:
        fake.add_user("basic@contoso.com", "fake-basic", "basic")
        fake.add_user("digest@contoso.com", "fake-digest", "digest")
        ok = requests.post(fake.ews_url, data=PROBE, auth=("basic@contoso.com", "fake-basic"))
        bad = requests.post(fake.ews_url, data=PROBE, auth=("basic@contoso.com", "wrong"))
        digest = requests.post(
            fake.ews_url,
            data=PROBE,
            auth=requests.auth.HTTPDigestAuth("digest@contoso.com", "fake-digest"),
        )
        bad_digest = requests.post(
            fake.ews_url,
            data=PROBE,
            auth=requests.auth.HTTPDigestAuth("digest@contoso.com", "wrong"),
        )
        # A Digest answer to a nonce the server never issued is refused.
        forged = requests.post(
            fake.ews_url,
            data=PROBE,
            headers={
                "Authorization": 'Digest username="digest@contoso.com", realm="ews.contoso.com", '
                'nonce="00", uri="/EWS/Exchange.asmx", response="00"'
            },
        )
    assert (ok.status_code, bad.status_code) == (200, 401)
    assert (digest.status_code, bad_digest.status_code, forged.status_code) == (200, 401, 401)


def test_a_user_must_use_its_own_scheme() -> None:
    with FakeExchange() as fake:
        fake.add_user("ntlm@contoso.com", "fake-ntlm", "ntlm")
        answer = requests.post(fake.ews_url, data=PROBE, auth=("ntlm@contoso.com", "fake-ntlm"))
    assert answer.status_code == 401


def test_negotiate_only_server_refuses_plain_ntlm_but_takes_ntlm_inside_negotiate() -> None:
    with FakeExchange() as fake:
        fake.add_user(EWS_DELEGATE, EWS_PASSWORD, "negotiate")
        fake.auth.negotiate_only = True
        challenge = requests.post(fake.ews_url, data=PROBE)
        with requests.Session() as session:
            session.auth = HttpNtlmAuth(f"\\{EWS_DELEGATE}", EWS_PASSWORD)
            answer = session.post(fake.ews_url, data=PROBE)
        headers = [r.header("Authorization").split(" ")[0] for r in fake.soap_requests()]
    assert challenge.headers["WWW-Authenticate"] == "Negotiate"
    assert answer.status_code == 200
    assert headers[-2:] == ["Negotiate", "Negotiate"]


def test_bearer_token_needs_the_validator_and_impersonation(fake_ews: FakeExchange) -> None:
    fake_ews.token_validator = lambda token: token == "fake-token-ok"
    envelope = PROBE.replace(
        b"<s:Header>",
        b"<s:Header><t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>"
        b"room-a@contoso.com</t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation>",
    )
    good = requests.post(
        fake_ews.ews_url, data=envelope, headers={"Authorization": "Bearer fake-token-ok"}
    )
    bad = requests.post(
        fake_ews.ews_url, data=envelope, headers={"Authorization": "Bearer fake-token-bad"}
    )
    fake_ews.app_impersonation = False
    denied = requests.post(
        fake_ews.ews_url, data=envelope, headers={"Authorization": "Bearer fake-token-ok"}
    )
    fake_ews.ews_blocked = True
    blocked = requests.post(
        fake_ews.ews_url, data=envelope, headers={"Authorization": "Bearer fake-token-ok"}
    )
    assert good.status_code == 200
    assert bad.status_code == 401 and 'error="invalid_token"' in bad.headers["WWW-Authenticate"]
    assert denied.status_code == 500 and b"ErrorImpersonateUserDenied" in denied.content
    assert blocked.status_code == 403


def test_exchangelib_reads_a_calendar_view_of_a_delegated_room(fake_ews: FakeExchange) -> None:
    account = _account(fake_ews, "room-b@contoso.com")
    start = EWSDateTime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    items = list(
        account.calendar.view(start=start, end=start + dt.timedelta(days=7)).only(
            "subject", "start", "is_recurring"
        )
    )
    subjects = sorted({item.subject for item in items})
    assert subjects == ["Board meeting", "Interview", "Yoga"]
    assert str(account.version.build) == "15.2.1544.4"
    assert fake_ews.count_op("FindItem", mailbox="room-b@contoso.com") == 1


def test_exchangelib_negotiates_the_api_version_of_exchange_2013() -> None:
    with FakeExchange(build=EXCHANGE_2013) as fake:
        fake.add_user(EWS_DELEGATE, EWS_PASSWORD, "basic", rooms=["room-a@contoso.com"])
        account = _account(fake, "room-a@contoso.com", auth=BASIC)
        version = account.version
        asked = [op.requested_version for op in fake.ops]
    assert str(version.build) == "15.0.1497.2"
    assert version.api_version == "Exchange2013_SP1"
    assert asked[0] == "Exchange2016" and fake.ops[0].outcome == "fault:ErrorInvalidServerVersion"


def test_rights_are_enforced(fake_ews: FakeExchange) -> None:
    from exchangelib.errors import ErrorAccessDenied, ErrorNonExistentMailbox

    with pytest.raises(ErrorAccessDenied):
        _account(fake_ews, "empty-room@contoso.com").calendar.all().count()
    with pytest.raises(ErrorNonExistentMailbox):
        _account(fake_ews, "nobody@contoso.com").calendar.all().count()


def test_localized_calendar_keeps_its_name_and_its_distinguished_id(
    fake_ews: FakeExchange,
) -> None:
    fake_ews.add_mailbox("raum-berlin@contoso.com", locale="de")
    fake_ews.grant(EWS_DELEGATE, "raum-berlin@contoso.com")
    calendar = _account(fake_ews, "raum-berlin@contoso.com").calendar
    assert calendar.name == "Kalender"


def test_find_item_refuses_streamed_properties(fake_ews: FakeExchange) -> None:
    body = (
        PROBE.split(b"<s:Body>")[0]
        + b"""<s:Body><m:FindItem Traversal="Shallow"><m:ItemShape>
<t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties><t:FieldURI FieldURI="item:Body"/>
</t:AdditionalProperties></m:ItemShape>
<m:CalendarView StartDate="2026-01-01T00:00:00Z" EndDate="2026-01-08T00:00:00Z"/>
<m:ParentFolderIds><t:DistinguishedFolderId Id="calendar"><t:Mailbox>
<t:EmailAddress>room-a@contoso.com</t:EmailAddress></t:Mailbox></t:DistinguishedFolderId>
</m:ParentFolderIds></m:FindItem></s:Body></s:Envelope>"""
    )
    fake_ews.add_user("basic@contoso.com", "fake-basic", "basic", rooms=["room-a@contoso.com"])
    token = base64.b64encode(b"basic@contoso.com:fake-basic").decode()
    answer = requests.post(fake_ews.ews_url, data=body, headers={"Authorization": f"Basic {token}"})
    assert b"ErrorInvalidPropertyRequest" in answer.content


def test_busy_answers_carry_back_off_milliseconds(fake_ews: FakeExchange) -> None:
    from exchangelib.errors import ErrorServerBusy

    account = _account(fake_ews, "room-a@contoso.com")
    assert account.version.build  # learned before the server gets busy
    fake_ews.inject_busy(1, back_off_ms=1500)
    with pytest.raises(ErrorServerBusy) as caught:
        account.calendar.all().count()
    assert caught.value.back_off == 1.5


def test_autodiscover_v2_answers_the_ews_url(fake_ews: FakeExchange) -> None:
    url = f"{fake_ews.url}/autodiscover/autodiscover.json/v1.0/room-a@contoso.com?Protocol=EWS"
    assert requests.get(url).json() == {"Protocol": "EWS", "Url": fake_ews.ews_url}
    wrong = requests.get(url.replace("Protocol=EWS", "Protocol=Nope"))
    assert wrong.status_code == 400 and wrong.json()["ErrorCode"] == "InvalidProtocol"
    with FakeAutodiscover("https://mail.contoso.com/EWS/Exchange.asmx") as other:
        answer = requests.get(
            f"{other.url}/autodiscover/autodiscover.json?Email=a@b.c&Protocol=Ews"
        )
        assert answer.json()["Url"] == "https://mail.contoso.com/EWS/Exchange.asmx"
        assert other.lookups() == 1
