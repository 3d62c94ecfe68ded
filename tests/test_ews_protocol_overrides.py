"""The exchangelib overrides (connector/sources/ews/protocol.py) fit the installed exchangelib.

protocol.py subclasses exchangelib classes and uses some of their internals. A new
exchangelib that renames or reshapes one of them fails nothing by itself: an override
nobody calls any more silently changes what is read (a wrong password retried as
throttling, all-day events on the wrong day, a 2007 server refusing every request).
So each test here names the override that broke; pyproject.toml keeps exchangelib
below the first version these tests have not passed with.

Nothing here talks to a server: Protocols and Accounts are made for an endpoint on
.invalid and dropped from exchangelib's cache afterwards.
"""

from __future__ import annotations

import datetime as dt
import inspect
import pickle
import time
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import exchangelib
import pytest
import requests
from django.conf import settings
from exchangelib import (
    BASIC,
    DELEGATE,
    NTLM,
    OAUTH2,
    Account,
    Configuration,
    Credentials,
)
from exchangelib import util as exchangelib_util
from exchangelib.credentials import BaseOAuth2Credentials
from exchangelib.ewsdatetime import UTC as EWS_UTC
from exchangelib.ewsdatetime import EWSDateTime
from exchangelib.items import CalendarItem
from exchangelib.properties import CalendarView, DistinguishedFolderId, Mailbox
from exchangelib.protocol import FaultTolerance, Protocol, RetryPolicy
from exchangelib.services import ConvertId, FindItem, GetItem
from exchangelib.services.common import EWSPagingService, EWSService
from exchangelib.util import create_element, to_xml, xml_to_str
from exchangelib.version import Build, Version
from exchangelib.winzone import MS_TIMEZONE_TO_IANA_MAP

from connector.sources.ews import protocol
from connector.sources.ews.mapping import zone_of
from connector.sources.ews.version import ASSUMED_VERSION

ENDPOINT = "https://ews.invalid/EWS/Exchange.asmx"


def broke(override: str, why: str) -> str:
    """The failure message: which override broke, and what not to do before it is fixed."""
    return (
        f"exchangelib {exchangelib.__version__} broke the override {override} "
        f"(connector/sources/ews): {why}. Fix the override first: the exchangelib upper bound "
        "in pyproject.toml must not be raised before it is fixed."
    )


# -- every member an override class defines overrides one of exchangelib ---------------

# Names protocol.py adds to its subclasses: exchangelib must not define them.
ADDED = {"deadline", "truncated", "hold", "_from_msal"}
PICKLING = {"__getstate__", "__setstate__"}


def _is_exchangelib(cls: type) -> bool:
    return cls.__module__.split(".")[0] == "exchangelib"


OVERRIDE_CLASSES = [
    cls
    for cls in vars(protocol).values()
    if inspect.isclass(cls)
    and cls.__module__ == protocol.__name__
    and any(_is_exchangelib(base) for base in cls.__mro__)
]


def _overrides() -> list[tuple[type, type, str]]:
    """(class used, class of protocol.py defining the member, member name)."""
    found = []
    for cls in OVERRIDE_CLASSES:
        for owner in cls.__mro__:
            if owner.__module__ != protocol.__name__:
                continue
            for name in vars(owner):
                dunder = name.startswith("__") and name.endswith("__")
                if name in ADDED or name == "_abc_impl" or (dunder and name not in PICKLING):
                    continue
                found.append((cls, owner, name))
    return found


OVERRIDES = _overrides()


def _definer(cls: type, owner: type, name: str) -> type | None:
    """The exchangelib class whose ``name`` the override replaces, in cls's MRO."""
    mro = cls.__mro__
    for base in mro[mro.index(owner) + 1 :]:
        if _is_exchangelib(base) and name in vars(base):
            return base
    return None


def _kind(member: Any) -> str:
    if isinstance(member, property):
        return "property"
    if isinstance(member, staticmethod | classmethod) or inspect.isfunction(member):
        return "method"
    return "attribute"


def _parameters(member: Any) -> list[str]:
    """Parameter names, without self or cls."""
    if isinstance(member, staticmethod):
        return list(inspect.signature(member.__func__).parameters)
    function = member.__func__ if isinstance(member, classmethod) else member
    return list(inspect.signature(function).parameters)[1:]


def test_the_overrides_are_all_found() -> None:
    # Guards the discovery above: each of these is an override protocol.py relies on.
    names = {(owner.__name__, name) for _, owner, name in OVERRIDES}
    assert {
        ("RefreshRetryPolicy", "back_off"),
        ("RefreshRetryPolicy", "raise_response_errors"),
        ("RefreshRetryPolicy", "__getstate__"),
        ("RefreshRetryPolicy", "__setstate__"),
        ("OwnCalendarId", "clean"),
        ("SchemaOfTheServer", "_timezone"),
        ("CalendarViewItems", "_elem_to_obj"),
        ("CalendarViewItems", "get_payload"),
        ("CalendarViewItems", "_get_paging_values"),
        ("CalendarViewItems", "WARNINGS_TO_IGNORE_IN_RESPONSE"),
        ("MsalCredentials", "access_token"),
        ("MsalCredentials", "refresh"),
        ("KerberosProtocol", "create_session"),
    } <= names


@pytest.mark.parametrize(
    ("cls", "owner", "name"),
    OVERRIDES,
    ids=[f"{cls.__name__}.{name}" for cls, _, name in OVERRIDES],
)
def test_each_override_replaces_a_member_exchangelib_still_has(
    cls: type, owner: type, name: str
) -> None:
    override = f"{owner.__name__}.{name}"
    definer = _definer(cls, owner, name)
    assert definer is not None, broke(
        override,
        f"no exchangelib base class of {cls.__name__} defines {name} any more, so exchangelib "
        "never uses the override",
    )
    ours = inspect.getattr_static(owner, name)
    theirs = inspect.getattr_static(definer, name)
    assert _kind(ours) == _kind(theirs), broke(
        override, f"{definer.__name__}.{name} is now a {_kind(theirs)}, not a {_kind(ours)}"
    )
    if _kind(ours) == "method":
        assert _parameters(ours) == _parameters(theirs), broke(
            override,
            f"{definer.__name__}.{name} now takes ({', '.join(_parameters(theirs))}), the "
            f"override ({', '.join(_parameters(ours))})",
        )


@pytest.mark.parametrize("name", sorted(ADDED))
def test_names_protocol_adds_are_not_exchangelib_s(name: str) -> None:
    owners = [cls for cls in OVERRIDE_CLASSES if name in vars(cls)]
    assert owners, f"{name} is no longer defined in protocol.py: remove it from ADDED"
    for cls in owners:
        taken = [
            base.__name__ for base in cls.__mro__ if _is_exchangelib(base) and name in vars(base)
        ]
        assert not taken, broke(
            f"{cls.__name__}.{name}", f"{', '.join(taken)} now defines {name} too"
        )


# -- exchangelib still calls each hook ----------------------------------------------------

CALLERS = [
    (
        "RefreshRetryPolicy.raise_response_errors",
        exchangelib_util.post_ratelimited,
        "protocol.retry_policy.raise_response_errors(",
    ),
    ("RefreshRetryPolicy.back_off", EWSService._handle_backoff, "retry_policy.back_off("),
    ("SchemaOfTheServer._timezone", EWSService.wrap, "self._timezone"),
    (
        "SchemaOfTheServer._get_soap_parts",
        EWSService._get_response_xml,
        "header, body = self._get_soap_parts(response=r)",
    ),
    ("CalendarViewItems._elem_to_obj", EWSService._elems_to_objs, "self._elem_to_obj("),
    (
        "CalendarViewItems._get_paging_values",
        EWSPagingService._get_page,
        "item_count, next_offset = self._get_paging_values(",
    ),
    (
        "CalendarViewItems.WARNINGS_TO_IGNORE_IN_RESPONSE",
        EWSService._get_element_container,
        "except self.WARNINGS_TO_IGNORE_IN_RESPONSE",
    ),
    (
        "MsalCredentials.access_token (dropped on closing a session)",
        Protocol.close_session,
        "self.credentials.access_token = None",
    ),
    (
        "MsalCredentials.access_token (read for each new session)",
        BaseOAuth2Credentials.session_params,
        '{"token": self.access_token}',
    ),
    (
        "MsalCredentials (no client secret: no renewal by the session itself)",
        BaseOAuth2Credentials.session_params,
        "if self.client_id and self.client_secret:",
    ),
    (
        "MsalCredentials (a token at hand: none fetched)",
        Protocol.create_oauth2_session,
        "if not session.token:",
    ),
    (
        "MsalCredentials.access_token (the shared oauthlib client)",
        Protocol.create_oauth2_session,
        "oauth2_client=self.credentials.client,",
    ),
    (
        "MsalCredentials.access_token (the shared oauthlib client)",
        Protocol.create_oauth2_session,
        "get_auth_instance(auth_type=OAUTH2, client=self.credentials.client)",
    ),
    (
        "MsalCredentials.refresh",
        Protocol.refresh_credentials,
        "self.credentials.refresh(session=session)",
    ),
    ("open_protocol (Protocol.TIMEOUT)", EWSService._get_response, "self.protocol.TIMEOUT"),
    ("open_protocol (Protocol.RETRY_WAIT)", EWSService._get_elements, "self.protocol.RETRY_WAIT"),
]


@pytest.mark.parametrize(
    ("override", "caller", "call"), CALLERS, ids=[override for override, _, _ in CALLERS]
)
def test_exchangelib_still_calls_the_hook(override: str, caller: Any, call: str) -> None:
    source = inspect.getsource(caller)
    assert call in source, broke(
        override, f"{caller.__qualname__} no longer contains {call!r}: the hook may not be used"
    )


# -- RefreshRetryPolicy -------------------------------------------------------------------


def test_fault_tolerance_still_takes_max_wait_and_a_default_back_off() -> None:
    assert "max_wait" in inspect.signature(FaultTolerance.__init__).parameters, broke(
        "RefreshRetryPolicy.__init__", "FaultTolerance() takes no max_wait any more"
    )
    assert isinstance(FaultTolerance.DEFAULT_BACKOFF, int | float), broke(
        "RefreshRetryPolicy.back_off", "FaultTolerance.DEFAULT_BACKOFF is gone"
    )
    assert "_local" not in vars(FaultTolerance(max_wait=1)), broke(
        "RefreshRetryPolicy.__init__", "FaultTolerance has an attribute _local of its own"
    )


def test_the_retry_policy_pickles_as_exchangelib_pickles_its_configuration() -> None:
    policy = protocol.RefreshRetryPolicy()
    try:
        copy = pickle.loads(pickle.dumps(policy))
    except Exception as exc:  # the message names the override, not pickle's internals
        pytest.fail(broke("RefreshRetryPolicy.__getstate__/__setstate__", repr(exc)))
    assert copy.max_wait == settings.REFRESH_TIMEOUT
    with copy.deadline(time.monotonic() + 60):  # a thread-local of its own again
        pass


def test_exchangelib_still_recognises_the_version_refusals_of_a_plain_http_500() -> None:
    source = inspect.getsource(RetryPolicy.raise_response_errors)
    for text in protocol.VERSION_REFUSALS:
        assert repr(text) in source or text.decode() in source, broke(
            "RefreshRetryPolicy.raise_response_errors (VERSION_REFUSALS)",
            f"RetryPolicy.raise_response_errors no longer looks for {text!r}",
        )


# -- the calendar view: services, fields, folders ------------------------------------------


@pytest.fixture
def account_of() -> Iterator[Any]:
    """Makes an Account (and a Protocol, without a request) for a server of the given build."""
    configs = []

    def make(build: Build) -> Account:
        config = Configuration(
            service_endpoint=ENDPOINT,
            credentials=Credentials(f"reader-{len(configs)}@example.com", "fake-password"),
            auth_type=NTLM,
            version=Version(build=build),
        )
        configs.append(config)
        return Account(
            "room@example.com",
            config=config,
            access_type=DELEGATE,
            default_timezone=EWS_UTC,
            locale="en_US",
        )

    yield make
    for config in configs:
        del Protocol[config]


@pytest.mark.parametrize("service", [protocol.CalendarViewItems, protocol.ItemsWithBodies])
def test_no_time_zone_header_for_exchange_2007_only(service: type, account_of: Any) -> None:
    def header(cls: type, build: Build) -> bool:
        envelope = cls(account=account_of(build)).wrap(
            content=create_element("m:FindItem"), api_version="Exchange2007_SP1"
        )
        return b"TimeZoneContext" in envelope

    assert header(FindItem, Build(8, 3)), "exchangelib no longer sends TimeZoneContext at all"
    assert not header(service, Build(8, 3)), broke(
        "SchemaOfTheServer._timezone", "the TimeZoneContext header goes to Exchange 2007"
    )
    assert header(service, Build(15, 1)), broke(
        "SchemaOfTheServer._timezone", "the TimeZoneContext header no longer goes to Exchange 2010+"
    )


PAGE = """<m:FindItemResponseMessage ResponseClass="{response_class}"
    xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"
    xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
  <m:ResponseCode>{code}</m:ResponseCode>
  <m:RootFolder TotalItemsInView="1" IncludesLastItemInRange="false">
    <t:Items>
      <t:CalendarItem>
        <t:ItemId Id="AAMk1" ChangeKey="DwAA1"/>
        <t:Subject>Board</t:Subject>
        <t:Start>2024-03-30T23:00:00.123Z</t:Start>
        <t:End>2024-03-31T22:00:00Z</t:End>
        <t:IsAllDayEvent>true</t:IsAllDayEvent>
        <t:StartTimeZone Id="W. Europe Standard Time"/>
        <t:EndTimeZone Id="tzone://Microsoft/Custom"/>
      </t:CalendarItem>
    </t:Items>
  </m:RootFolder>
</m:FindItemResponseMessage>"""


@pytest.mark.parametrize(
    ("response_class", "code"),
    [("Success", "NoError"), ("Warning", "ErrorExceededFindCountLimit")],
)
def test_a_calendar_view_page_is_read_through_exchangelib_s_own_calls(
    response_class: str, code: str, account_of: Any
) -> None:
    service = protocol.CalendarViewItems(account=account_of(Build(15, 1)))
    service.shape = "IdOnly"  # as FindItem.call sets them
    service.additional_fields = protocol.find_fields(Version(build=Build(15, 1)))
    message = to_xml(PAGE.format(response_class=response_class, code=code).encode()).getroot()

    page, next_offset = service._get_page(message)
    assert not isinstance(page, Exception), broke(
        "CalendarViewItems.WARNINGS_TO_IGNORE_IN_RESPONSE", f"a {response_class} lost its items"
    )
    assert service.truncated and next_offset is None, broke(
        "CalendarViewItems._get_paging_values", "IncludesLastItemInRange is no longer read"
    )
    elems = list(service._get_elems_from_page(page, max_items=None, total_item_count=0))
    [item] = list(service._elems_to_objs(elems))
    assert item.raw == (
        "2024-03-30T23:00:00.123Z",
        "2024-03-31T22:00:00Z",
        ZoneInfo("Europe/Berlin"),
        None,
    ), broke("CalendarViewItems._elem_to_obj", f"the raw times read are {item.raw}")
    assert item.subject == "Board" and item.id == "AAMk1", broke(
        "CalendarViewItems._elem_to_obj", "exchangelib no longer hands each item element"
    )


@pytest.mark.parametrize("build", [Build(8, 0), Build(14, 3), Build(15, 1)])
def test_each_request_is_exchangelib_s_own_for_its_room_and_window(
    build: Build, account_of: Any
) -> None:
    account = account_of(build)
    fields = protocol.find_fields(Version(build=build))

    def payload(service_class: type, folder: Any, start: dt.datetime) -> str:
        service = service_class(account=account)
        view = CalendarView(start=start, end=start + dt.timedelta(days=1, seconds=1))
        arguments = protocol.find_item_arguments(folder, view, fields)
        del arguments["max_items"]
        arguments["page_size"] = service.page_size
        # As exchangelib's paging passes them: the keys of a dict.
        arguments["folders"] = dict.fromkeys(arguments["folders"]).keys()
        return xml_to_str(service.get_payload(**arguments))

    def room(address: str) -> DistinguishedFolderId:
        return DistinguishedFolderId(id="calendar", mailbox=Mailbox(email_address=address))

    first = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
    requests = [
        (room("room-1@example.com"), first),
        (room("room-2@example.com"), first + dt.timedelta(hours=5)),
        (room("room-1@example.com"), first + dt.timedelta(days=40)),
        (protocol.OwnCalendarId(id="calendar"), first),
        (protocol.OwnCalendarId(id="calendar"), first + dt.timedelta(days=1)),
    ]
    for folder, start in requests:
        ours = payload(protocol.CalendarViewItems, folder, start)
        assert ours == payload(FindItem, folder, start), broke(
            "CalendarViewItems.get_payload", "the FindItem request differs from exchangelib's"
        )
        if folder.mailbox is not None:
            assert folder.mailbox.email_address in ours, broke(
                "CalendarViewItems.get_payload", "the room is not asked for"
            )
        if build >= Build(14, 0):
            assert "calendar:StartTimeZone" in ours, broke(
                "CalendarViewItems.get_payload", "the zones are not asked for"
            )


def test_the_fields_asked_for_are_calendar_item_fields() -> None:
    try:
        protocol.find_fields(Version(build=Build(15, 1)))
        protocol.get_item_arguments([("AAMk1", "DwAA1")], "text_body")
        protocol.get_item_arguments([("AAMk1", "DwAA1")], "body")
    except Exception as exc:
        pytest.fail(broke("find_fields / get_item_arguments", repr(exc)))
    # CalendarViewItems._elem_to_obj reads (and removes) these two elements itself.
    uris = [CalendarItem.get_field_by_fieldname(name).field_uri for name in protocol.ZONE_FIELDS]
    assert uris == ["calendar:StartTimeZone", "calendar:EndTimeZone"], broke(
        "find_fields (ZONE_FIELDS)", f"the private zone fields now ask for {uris}"
    )


def test_find_item_still_takes_the_arguments_given() -> None:
    start = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
    view = CalendarView(start=start, end=start + dt.timedelta(days=1))
    arguments = protocol.find_item_arguments(protocol.OwnCalendarId(id="calendar"), view, [])
    try:
        inspect.signature(FindItem.call).bind(None, **arguments)
    except TypeError as exc:
        pytest.fail(broke("find_item_arguments (FindItem.call)", str(exc)))


def test_get_item_still_takes_the_arguments_given() -> None:
    arguments = protocol.get_item_arguments([("AAMk1", "DwAA1")], "text_body")
    try:
        inspect.signature(GetItem.call).bind(None, **arguments)
    except TypeError as exc:
        pytest.fail(broke("get_item_arguments (GetItem.call)", str(exc)))


def test_the_own_calendar_needs_no_mailbox_where_a_distinguished_folder_does() -> None:
    with pytest.raises(ValueError):  # why OwnCalendarId exists
        DistinguishedFolderId(id="calendar").clean()
    try:
        protocol.OwnCalendarId(id="calendar").clean()
    except Exception as exc:
        pytest.fail(broke("OwnCalendarId.clean", repr(exc)))


def test_windows_zone_ids_still_map_to_iana_zones() -> None:
    assert isinstance(MS_TIMEZONE_TO_IANA_MAP, dict), broke(
        "mapping.zone_of", "exchangelib.winzone.MS_TIMEZONE_TO_IANA_MAP is no dict"
    )
    assert zone_of("W. Europe Standard Time") == ZoneInfo("Europe/Berlin"), broke(
        "mapping.zone_of", "MS_TIMEZONE_TO_IANA_MAP lost W. Europe Standard Time"
    )


# -- connections and tokens ------------------------------------------------------------------


def test_open_protocol_replaces_exchangelib_s_cached_protocol() -> None:
    def config(auth_type: str) -> Configuration:
        credentials = Credentials("reader@example.com", "fake-password")
        return Configuration(
            service_endpoint=ENDPOINT, credentials=credentials, auth_type=auth_type
        )

    first = Protocol(config=config(NTLM))
    try:
        # Why open_protocol drops the cached one: the cache ignores all but endpoint and
        # credentials, so another scheme would get the old Protocol.
        assert Protocol(config=config(BASIC)) is first, broke(
            "open_protocol", "Protocol's cache key changed (the deletion may be needless now)"
        )
        assert Protocol[config(NTLM)][0] is first, broke(
            "open_protocol", "Protocol[config] no longer gives the cached (protocol, time)"
        )
        fresh = protocol.open_protocol(config(BASIC))
        assert fresh is not first and Protocol[config(BASIC)][0] is fresh, broke(
            "open_protocol", "del Protocol[config] no longer drops the cached Protocol"
        )
        assert fresh.TIMEOUT == settings.EXCHANGE_REQUEST_TIMEOUT
        assert fresh.RETRY_WAIT == protocol.RETRY_WAIT
    finally:
        try:
            del Protocol[config(NTLM)]
        except KeyError:
            pass


def _msal(asked: list[str]) -> protocol.TokenProvider:
    """A provider as pool.AppTokens, without msal: a new token on each call."""

    def provider(refused: str) -> tuple[str, float]:
        asked.append(refused)
        return f"fake-msal-token-{len(asked)}", time.time() + 3600

    return provider


def _sent(session: Any) -> str:
    """The Authorization header the session adds to a request (nothing is sent)."""
    request = requests.Request("POST", ENDPOINT, data=b"<soap/>").prepare()
    session.auth(request)
    return str(request.headers.get("Authorization", ""))


def test_a_token_handed_over_is_the_one_exchangelib_sends() -> None:
    member = inspect.getattr_static(BaseOAuth2Credentials, "access_token")
    assert isinstance(member, property) and member.fset is not None, broke(
        "MsalCredentials.hold", "OAuth2Credentials.access_token can no longer be set"
    )
    credentials = protocol.MsalCredentials(client_id="app", tenant_id="tenant", provider=_msal([]))
    signature = credentials.sig()
    try:
        credentials.hold("fake-access-token", time.time() + 3600)
    except Exception as exc:
        pytest.fail(broke("MsalCredentials.hold", repr(exc)))
    assert credentials.session_params()["token"]["access_token"] == "fake-access-token", broke(
        "MsalCredentials.hold", "sessions no longer take OAuth2Credentials.access_token"
    )
    assert credentials.sig() != signature, broke(
        "MsalCredentials.hold",
        "a new token no longer changes the credentials' signature, so "
        "sessions made with the old one are not renewed",
    )
    assert "auto_refresh_url" not in credentials.session_params(), broke(
        "MsalCredentials", "sessions renew tokens themselves without a client secret"
    )


def test_exchangelib_s_sessions_send_msal_s_token_and_never_fetch_one() -> None:
    asked: list[str] = []
    credentials = protocol.MsalCredentials(
        client_id="app", tenant_id="tenant", provider=_msal(asked)
    )
    config = Configuration(service_endpoint=ENDPOINT, credentials=credentials, auth_type=OAUTH2)
    ews = protocol.open_protocol(config)
    why = "exchangelib fetches a token itself (login.microsoftonline.com) or sends another"
    try:
        credentials.hold("fake-held-token", time.time() + 3600)
        first = ews.create_session()
        assert _sent(first) == "Bearer fake-held-token", broke("MsalCredentials.hold", why)
        assert asked == []
        # What exchangelib does after any failed request: close the session (dropping the
        # credentials' token) and make another, which must take msal's.
        ews.retire_session(first)
        second = ews.get_session()
        assert asked == [""], broke("MsalCredentials.access_token", why)
        assert _sent(second) == "Bearer fake-msal-token-1", broke(
            "MsalCredentials.access_token", why
        )
        # A token handed over later is sent by the sessions made before it.
        credentials.hold("fake-next-token", time.time() + 3600)
        assert _sent(second) == "Bearer fake-next-token", broke(
            "MsalCredentials.access_token (the shared oauthlib client)", why
        )
        # A session whose token expired asks the credentials to refresh: msal discards it.
        renewed = ews.refresh_credentials(ews.create_session())
        assert asked[1:] == ["fake-next-token", ""], broke("MsalCredentials.refresh", why)
        assert _sent(renewed) == "Bearer fake-msal-token-3", broke("MsalCredentials.refresh", why)
    finally:
        ews.close()
        try:
            del Protocol[config]
        except KeyError:
            pass


# -- the version probe ---------------------------------------------------------------------


def test_the_version_probe_still_starts_at_the_newest_version() -> None:
    assert "api_version_hint" in inspect.signature(Version.guess).parameters, broke(
        "guess_older_version", "Version.guess takes no api_version_hint any more"
    )
    versions = ConvertId.supported_api_versions()
    assert len(versions) > 1 and versions == sorted(versions, reverse=True), broke(
        "guess_older_version", f"ConvertId.supported_api_versions() is now {versions}"
    )
    source = inspect.getsource(Version.guess)
    # guess_older_version tries the others: the first one is what Version.guess tried.
    assert "ConvertId.supported_api_versions()[0]" in source, broke(
        "guess_older_version", "Version.guess no longer starts at the newest API version"
    )
    assert 'TransportError(f"No valid version headers' in source, broke(
        "no_version_told", "Version.guess words an answer without a version otherwise"
    )


def test_an_account_s_version_shares_the_build_of_the_protocol_s() -> None:
    # version.remember_version tells the assumed version by the identity of its Build.
    assert ASSUMED_VERSION.copy().build is ASSUMED_VERSION.build, broke(
        "version.remember_version", "Version.copy() no longer keeps the Build"
    )
    assert "self.protocol.version.copy()" in inspect.getsource(Account), broke(
        "version.remember_version", "Account.version is no longer a copy of Protocol.version"
    )


def test_an_account_is_made_without_asking_the_server_its_version() -> None:
    # EwsSource._account makes the Account before version.learn_version probes (once, and
    # walking down where exchangelib does not); exchangelib before 5.5.1 probed in Account().
    assert isinstance(vars(Account).get("version"), property), broke(
        "EwsSource._account / version.learn_version",
        "Account() asks the server its version when made, not when first used",
    )


# -- EWSDateTime.from_string: Exchange's UTC instants read without strptime ----------------


@pytest.mark.parametrize(
    "text",
    [
        "2026-12-03T09:00:00Z",
        "2024-02-29T23:59:59Z",
        "1601-01-01T00:00:00Z",
        "2026-12-03T09:00:00+01:00",  # an offset: exchangelib's own reading
        "2026-12-03T09:00:00.123Z",  # fractions: exchangelib's own reading (it refuses)
        "2026-13-03T09:00:00Z",  # no such month: refused as exchangelib refuses it
    ],
)
def test_instants_read_as_exchangelib_reads_them(text: str) -> None:
    def read(method: Any) -> Any:
        try:
            value = method(EWSDateTime, text)
        except ValueError as exc:
            return type(exc)
        return (type(value), value, value.tzinfo)

    assert read(protocol._instant_from_string) == read(protocol._exchangelib_from_string)


def test_exchangelib_still_reads_instants_through_from_string() -> None:
    from exchangelib.fields import DateTimeField

    assert "self.value_cls.from_string(val)" in inspect.getsource(DateTimeField.from_xml)
    assert DateTimeField("start").value_cls is EWSDateTime
    assert EWSDateTime.from_string("2026-12-03T09:00:00Z") == dt.datetime(
        2026, 12, 3, 9, tzinfo=dt.UTC
    )
    assert EWSDateTime.from_string.__func__ is protocol._instant_from_string
