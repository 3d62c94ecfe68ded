"""Every Graph failure the fake produces is reported with the fix an admin would apply."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from connector.core.errors import SourceError
from connector.core.records import Window
from connector.core.trace import Trace
from connector.models import Server
from connector.sources.graph import GraphSource
from tests.fakes.graph import FakeGraph
from tests.fakes.identity import FakeIdentityPlatform
from tests.fixtures.identity import GRAPH_CLIENT_ID, GRAPH_SECRET

ROOM = "room-a@contoso.com"


def window() -> Window:
    start = dt.datetime.combine(dt.date.today(), dt.time(), tzinfo=dt.UTC)
    return Window(start, start + dt.timedelta(days=7))


def fail(server: Server, resource: str = ROOM, *, deadline: float | None = None) -> SourceError:
    trace = Trace()
    with pytest.raises(SourceError) as excinfo:
        GraphSource(server, trace=trace, deadline=deadline).fetch(resource, window())
    error = excinfo.value
    for text in (error.message, error.hint, repr(trace)):
        assert GRAPH_SECRET not in text
    assert trace.failed_step is not None
    assert trace.failed_step.hint == error.hint
    return error


def test_calendars_read_not_consented(graph_server: Server, fake_graph: FakeGraph) -> None:
    fake_graph.revoke(GRAPH_CLIENT_ID, "Calendars.Read")
    error = fail(graph_server)
    assert error.code == "ErrorAccessDenied"
    assert error.resource == ROOM
    assert "Calendars.Read APPLICATION permission" in error.hint
    assert "admin consent" in error.hint
    assert f"Test-ServicePrincipalAuthorization -Identity {GRAPH_CLIENT_ID} -Resource {ROOM}" in (
        error.hint
    )
    assert error.retryable is False


def test_rbac_scope_without_the_room(graph_server: Server, fake_graph: FakeGraph) -> None:
    fake_graph.limit_to(GRAPH_CLIENT_ID, {"room-b@contoso.com"})
    GraphSource(graph_server).fetch("room-b@contoso.com", window())  # in scope: works
    error = fail(graph_server)
    assert error.code == "ErrorAccessDenied"
    assert "management scope" in error.hint


def test_legacy_application_access_policy(graph_server: Server, fake_graph: FakeGraph) -> None:
    fake_graph.block_by_access_policy(GRAPH_CLIENT_ID, ROOM)
    error = fail(graph_server)
    assert error.code == "ErrorAccessDenied"
    assert "application access policy" in error.hint
    assert f"Test-ApplicationAccessPolicy -Identity {ROOM} -AppId {GRAPH_CLIENT_ID}" in error.hint


def test_unknown_mailbox(graph_server: Server, fake_graph: FakeGraph) -> None:
    error = fail(graph_server, "no-such-room@contoso.com")
    assert error.code == "ErrorInvalidUser"
    assert "no-such-room@contoso.com" in error.message
    assert "SMTP address" in error.hint


def test_refused_token_is_replaced_once(
    graph_server: Server, fake_graph: FakeGraph, fake_identity: FakeIdentityPlatform
) -> None:
    GraphSource(graph_server).fetch(ROOM, window())
    fake_identity.revoke_tokens()  # Graph now answers 401 to the cached token

    records = GraphSource(graph_server).fetch(ROOM, window())

    assert records
    assert fake_identity.token_requests() == 2
    statuses = [r.header("authorization") for r in fake_graph.calendar_view_requests()]
    assert len(statuses) == 3 and statuses[1] != statuses[2]


def test_token_for_another_resource_is_reported(
    graph_server: Server, fake_graph: FakeGraph, fake_identity: FakeIdentityPlatform
) -> None:
    # localhost is the same fake, but tokens are issued for the base URI asked: a
    # mismatch like a national-cloud Graph with the global authority.
    graph_server.base_uri = fake_graph.url.replace("127.0.0.1", "localhost")
    graph_server.save()
    error = fail(graph_server)
    assert error.code == "InvalidAuthenticationToken"
    assert "base URI" in error.hint
    assert len(fake_graph.calendar_view_requests()) == 2  # one retry with a new token
    assert fake_identity.token_requests() == 2


def test_graph_unreachable(graph_server: Server, fake_graph: FakeGraph) -> None:
    fake_graph.stop()
    error = fail(graph_server)
    assert error.code == "connection"
    assert error.retryable is True


def test_token_failure_comes_from_the_token_step(
    graph_server: Server, fake_graph: FakeGraph, fake_identity: FakeIdentityPlatform
) -> None:
    fake_identity.expire_secret(GRAPH_CLIENT_ID)
    error = fail(graph_server)
    assert error.code == "AADSTS7000222"
    assert error.step == "token"
    assert fake_graph.count() == 0


def test_unavailable_is_retried_and_a_server_error_reported(
    graph_server: Server, fake_graph: FakeGraph
) -> None:
    source = GraphSource(graph_server)
    fake_graph.throttle_next(1, status=503, retry_after=0)
    assert source.fetch(ROOM, window())  # one 503, then the answer

    fake_graph.faults.fail_next(1, status=500)
    error = fail(graph_server)
    assert error.code == "http-500"
    assert error.retryable is True


def test_gateway_timeouts_beyond_the_bound_are_reported(
    graph_server: Server, fake_graph: FakeGraph
) -> None:
    fake_graph.throttle_next(10, status=504, retry_after=30)
    started = time.monotonic()
    error = fail(graph_server, deadline=started + 5)
    assert time.monotonic() - started < 2  # no 30 s wait that would overrun the refresh
    assert error.code == "http-504"
    assert error.retryable is True
    assert len(fake_graph.calendar_view_requests()) == 1


def test_missing_app_registration(graph_server: Server, fake_graph: FakeGraph) -> None:
    graph_server.app_registration = None
    error = fail(graph_server)
    assert error.code == "no-credentials"
    assert "Calendars.Read" in error.hint


def test_a_next_page_on_another_host_is_not_followed(
    graph_server: Server, fake_graph: FakeGraph
) -> None:
    # Reached as localhost, the fake writes its next links for 127.0.0.1: another
    # host, which must not receive our token.
    other_name = fake_graph.url.replace("127.0.0.1", "localhost")
    fake_graph.extra_audiences.add(other_name)
    graph_server.base_uri = other_name
    graph_server.save()
    fake_graph.max_page_size = 8

    error = fail(graph_server)

    assert error.code == "bad-response"
    assert "another host" in error.message
    assert len(fake_graph.calendar_view_requests()) == 1
