"""What reading EWS costs: one request per room per refresh once connected, bounded waits."""

from __future__ import annotations

import datetime as dt
import threading
import time

from prometheus_client import REGISTRY

from connector.core.records import Window
from connector.core.trace import Trace
from connector.models import Server
from connector.sources import open_source
from connector.sources.ews import reset_pool
from tests.fakes.ews import FakeExchange

ROOMS = ("room-a@contoso.com", "room-b@contoso.com", "big-hall@contoso.com")


def week() -> Window:
    start = dt.datetime.combine(dt.date.today(), dt.time(), tzinfo=dt.UTC)
    return Window(start, start + dt.timedelta(days=7))


def refresh(server: Server) -> int:
    """One refresh of every room, as the refresh task does it: a new source each time."""
    source = open_source(server)
    return sum(len(source.fetch(room, week())) for room in ROOMS)


def operations(fake: FakeExchange) -> list[str]:
    return [op.operation for op in fake.ops]


def test_after_the_first_refresh_each_room_costs_one_request(
    ews_server: Server, fake_ews: FakeExchange
) -> None:
    first = refresh(ews_server)
    assert operations(fake_ews) == ["ConvertId", "FindItem", "FindItem", "FindItem"]

    for _ in range(3):
        fake_ews.clear_log()
        assert refresh(ews_server) == first
        assert operations(fake_ews) == ["FindItem"] * len(ROOMS)
        # Not even an authentication round trip: the NTLM connection is pooled.
        assert len(fake_ews.soap_requests()) == len(ROOMS)
        assert {op.mailboxes for op in fake_ews.ops} == {(room,) for room in ROOMS}


def test_a_new_process_asks_neither_version_nor_folders(
    ews_server: Server, fake_ews: FakeExchange
) -> None:
    refresh(ews_server)
    ews_server.refresh_from_db()
    assert ews_server.ews_version == "15.2.1544.4"

    reset_pool()  # what a new worker process starts with
    fake_ews.clear_log()
    refresh(Server.objects.get(pk=ews_server.pk))

    assert operations(fake_ews) == ["FindItem"] * len(ROOMS)
    # The new connection authenticates once (anonymous, Negotiate, Authenticate+FindItem).
    assert len(fake_ews.soap_requests()) == len(ROOMS) + 2
    assert len({r.connection_id for r in fake_ews.soap_requests()}) == 1


def test_pooled_connections_follow_the_servers_configuration(
    ews_server: Server, fake_ews: FakeExchange
) -> None:
    refresh(ews_server)
    first_connection = fake_ews.soap_requests()[-1].connection_id
    refresh(ews_server)
    assert fake_ews.soap_requests()[-1].connection_id == first_connection

    ews_server.label = "Renamed"
    ews_server.save()  # a changed configuration gets a new connection, not a new probe
    fake_ews.clear_log()
    refresh(ews_server)

    assert fake_ews.soap_requests()[-1].connection_id != first_connection
    assert operations(fake_ews) == ["FindItem"] * len(ROOMS)


def test_server_busy_back_off_is_honoured(ews_server: Server, fake_ews: FakeExchange) -> None:
    source = open_source(ews_server)
    expected = source.fetch("room-a@contoso.com", week())
    fake_ews.clear_log()
    fake_ews.inject_busy(2, back_off_ms=150)

    started = time.monotonic()
    records = source.fetch("room-a@contoso.com", week())
    elapsed = time.monotonic() - started

    assert records == expected
    assert [op.outcome for op in fake_ews.ops] == ["busy", "busy", "ok"]
    # exchangelib renews its session after sleeping: each attempt opens a connection.
    attempts: dict[int, float] = {}
    for request in fake_ews.soap_requests():
        attempts.setdefault(request.connection_id, request.received)
    sent = sorted(attempts.values())
    assert len(sent) == 3
    assert all(later - earlier >= 0.14 for earlier, later in zip(sent, sent[1:], strict=False))
    assert elapsed >= 0.28


def test_concurrency_is_bounded_per_account(
    ews_server: Server, fake_ews: FakeExchange, settings
) -> None:  # type: ignore[no-untyped-def]
    settings.EWS_MAX_CONCURRENCY = 2
    open_source(ews_server).fetch("room-a@contoso.com", week())  # version learned first
    fake_ews.work_time = 0.15
    sources = [open_source(ews_server) for _ in range(6)]
    failures: list[BaseException] = []

    def read(index: int) -> None:
        try:
            sources[index].fetch(ROOMS[index % len(ROOMS)], week())
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=read, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert failures == []
    assert fake_ews.count_op("FindItem") == 7
    assert fake_ews.max_in_flight == 2


def test_the_trace_shows_the_version_learned_then_remembered(
    ews_server: Server, fake_ews: FakeExchange
) -> None:
    first, second = Trace(), Trace()
    open_source(ews_server, trace=first).fetch("room-b@contoso.com", week())
    open_source(ews_server, trace=second).fetch("room-b@contoso.com", week())

    assert [step.name for step in first.steps] == ["connect", "fetch"]
    assert "Exchange 15.2.1544.4 (learned)" in first.steps[0].details
    assert "Exchange 15.2.1544.4 (remembered)" in second.steps[0].details
    assert any("pooled connection" in note for note in second.steps[0].details)
    assert second.steps[1].data["count"] == first.steps[1].data["count"] > 0


def test_requests_are_counted_in_the_metrics(ews_server: Server, fake_ews: FakeExchange) -> None:
    labels = {"upstream": ews_server.server_id, "outcome": "ok"}
    before = REGISTRY.get_sample_value("ews_calendar_exchange_requests_total", labels) or 0
    refresh(ews_server)
    after = REGISTRY.get_sample_value("ews_calendar_exchange_requests_total", labels)
    assert after == before + len(ROOMS)
