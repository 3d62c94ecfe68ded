"""The site's URLs, for generated paths and query strings: never a 500, never a secret.

Anonymous visitors, signage staff and an administrator ask for the feed
(``/ical/<id>.ics`` and the PHP connector's ``2ical.php``), the status page, the
console, ``/healthz``, ``/metrics`` and admin pages, with ids and parameters that
exist, that do not, and that are junk. Whatever the answer, it is not a server
error, and its body and headers carry no password, client secret, refresh token
or key of the site; nor a feed key, to a visitor who did not bring it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import Client
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from accounts.models import AppRegistration, ServiceAccount
from connector.models import Calendar, Filter, Resource, Server
from connector.services.refresh import refresh_calendars
from tests.fakes.icsorigin import FakeIcsOrigin
from tests.fixtures.icsorigin import published_origin

PASSWORD = "fake-secret-surface-account-pw"
CALENDAR_PASSWORD = "fake-secret-surface-calendar-pw"
CLIENT_SECRET = "fake-secret-surface-client-secret"
REFRESH_TOKEN = "fake-secret-surface-refresh-token"
LEGACY = "/plugnCast/.applets/.ews-calendar/2ical.php"

# A feed whose snapshot is stale refreshes in a thread with its own connection.
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("refresh_threads_joined"),
]


@dataclass
class Site:
    calendar_ids: list[str]
    feed_keys: list[str]
    pks: dict[str, int]
    users: dict[str, User | None]

    @property
    def secrets(self) -> list[str]:
        return [
            PASSWORD,
            CALENDAR_PASSWORD,
            CLIENT_SECRET,
            REFRESH_TOKEN,
            django_settings.SECRET_KEY,
            *django_settings.FIELD_ENCRYPTION_KEYS,
        ]


@pytest.fixture
def origin() -> Iterator[FakeIcsOrigin]:
    with published_origin("signage", PASSWORD) as fake:
        yield fake


@pytest.fixture
def site(db: None, origin: FakeIcsOrigin, admin_user: User, staff_user: User) -> Site:
    account = ServiceAccount.objects.create(name="signage", username="signage", password=PASSWORD)
    app = AppRegistration.objects.create(
        name="contoso",
        flow=AppRegistration.Flow.DELEGATED,
        tenant="contoso.onmicrosoft.com",
        client_id="11111111-2222-3333-4444-555555555555",
        client_secret=CLIENT_SECRET,
        account="signage@contoso.com",
    )
    app.refresh_token = REFRESH_TOKEN
    app.save()
    files = Server.objects.create(
        server_id="files",
        type=Server.Type.ICS,
        base_uri=f"{origin.url}/published/",
        service_account=account,
    )
    # Nothing listens on port 9: its console and feed fail at once, in plain words.
    onprem = Server.objects.create(
        server_id="onprem", base_uri="https://127.0.0.1:9", service_account=account
    )
    Server.objects.create(server_id="online", type=Server.Type.GRAPH, app_registration=app)
    hall = Calendar.objects.create(calendar_id="hall", server=files, cache_persistence=86400)
    Resource.objects.create(calendar=hall, address="room.ics")
    Filter.objects.create(calendar=hall)
    lobby = Calendar.objects.create(
        calendar_id="lobby", server=onprem, username="reader", password=CALENDAR_PASSWORD
    )
    Resource.objects.create(calendar=lobby, address="lobby@contoso.com")
    (outcome,) = refresh_calendars([hall])  # a fresh snapshot: its feed asks nothing
    assert outcome.ok
    return Site(
        calendar_ids=["hall", "lobby"],
        feed_keys=[hall.feed_key, lobby.feed_key],
        pks={
            "calendar": hall.pk,
            "server": files.pk,
            "account": account.pk,
            "app": app.pk,
        },
        users={"anonymous": None, "staff": staff_user, "admin": admin_user},
    )


# -- strategies ---------------------------------------------------------------------------

junk = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]),
    max_size=12,
)
ascii_junk = st.text(st.sampled_from("abcXYZ019._~-/%?&#=+ ;:@!$'()*,\\\"<>[]{}|^`"), max_size=12)


@st.composite
def ids(draw: st.DrawFn, site: Site) -> str:
    """Half the time a calendar that exists, else something that may look like one."""
    if draw(st.booleans()):
        return draw(st.sampled_from(site.calendar_ids))
    return draw(
        st.one_of(
            st.sampled_from([cid.upper() for cid in site.calendar_ids]),
            junk,
            ascii_junk,
            st.sampled_from(["..", "../..", "%2e%2e", "hall.ics", "hall/", "", " ", "\x00"]),
        )
    )


def values(site: Site) -> st.SearchStrategy[str]:
    return st.one_of(
        junk,
        ascii_junk,
        st.sampled_from(site.feed_keys),
        st.sampled_from(["yes", "YES", "no", "text", "ics", "html", "1", "-1", "9" * 30]),
    )


def queries(site: Site, names: list[str]) -> st.SearchStrategy[str]:
    pairs = st.lists(
        st.tuples(st.one_of(st.sampled_from(names), ascii_junk), values(site)), max_size=4
    )
    return st.one_of(pairs.map(lambda items: urlencode(items)), ascii_junk)


@st.composite
def requests(draw: st.DrawFn, site: Site) -> tuple[str, str, str]:
    """(who, method, URL) of one request."""
    segment = draw(ids(site)).replace("/", draw(st.sampled_from(["/", "%2F", "-"])))
    cid = quote(segment, safe=draw(st.sampled_from(["", "/", "%"])))
    pk = draw(st.one_of(st.sampled_from(list(site.pks.values())), st.integers(-2, 10**12)))
    kind = draw(st.sampled_from(["feed", "feed", "legacy", "legacy", "console", "page", "admin"]))
    route = draw(
        st.sampled_from(
            {
                "feed": [f"/ical/{cid}.ics", f"/ical/{cid}"],
                "legacy": [LEGACY],
                "console": [f"/console/{cid}/"],
                "page": ["/status/", "/status/fragment/", "/healthz", "/metrics"],
                "admin": [
                    "/admin/",
                    "/admin/login/",
                    "/admin/connector/calendar/",
                    f"/admin/connector/calendar/{pk}/change/",
                    f"/admin/connector/calendar/{cid}/change/",
                    "/admin/connector/calendar/export/",
                    "/admin/connector/calendar/import/",
                    f"/admin/connector/server/{pk}/change/",
                    "/admin/connector/server/",
                    f"/admin/accounts/serviceaccount/{pk}/change/",
                    f"/admin/accounts/appregistration/{pk}/change/",
                    "/admin/accounts/appregistration/",
                    f"/admin/{cid}/",
                ],
            }[kind]
        )
    )
    names = ["calendarId", "debug", "key", "format", "q", "o", "p", "next", "e", "all"]
    query = draw(queries(site, names))
    if route == LEGACY and draw(st.booleans()):
        wanted = {
            "calendarId": draw(ids(site)),
            "debug": draw(st.sampled_from(["yes", "no", ""])),
            "key": draw(values(site)),
        }
        query = urlencode(
            {k: v for k, v in wanted.items() if k == "calendarId" or draw(st.booleans())}
        )
    url = f"{route}?{query}" if query else route
    who = draw(st.sampled_from(sorted(site.users)))
    method = draw(st.sampled_from(["GET", "GET", "HEAD"]))
    return who, method, url


# -- the property -------------------------------------------------------------------------


def body_of(response: Any) -> str:
    content = (
        b"".join(response.streaming_content) if response.streaming else bytes(response.content)
    )
    headers = "\n".join(f"{name}: {value}" for name, value in response.items())
    return headers + "\n" + content.decode("utf-8", "replace")


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,  # the same requests on every run: no test that fails one day in ten
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_url_gives_a_server_error_or_a_secret(site: Site, data: st.DataObject) -> None:
    who, method, url = data.draw(requests(site), label="request")
    client = Client()
    user = site.users[who]
    if user is not None:
        client.force_login(user)

    response = client.generic(method, url)
    # --hypothesis-show-statistics shows the spread of pages and answers.
    event(f"{who} {url.split('/')[1][:6]}: {response.status_code}")

    # 502 (Exchange is down: the feed says so) and 503 (/healthz: unhealthy) are answers.
    assert response.status_code < 500 or response.status_code in (502, 503), (
        response.status_code,
        url,
    )
    page = body_of(response)
    for secret in site.secrets:
        assert secret not in page, (who, url)
    if user is None:
        for key in site.feed_keys:
            if key not in url:
                assert key not in page, (who, url)
