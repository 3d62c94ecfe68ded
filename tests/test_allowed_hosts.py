"""Players reach the machine by its name or LAN address: without ALLOWED_HOSTS the site
answers to the names and addresses it finds at start; a refused name gets a plain 400
that says what to do, and /status/ names it."""

from __future__ import annotations

import socket

import psutil
import pytest
from django.contrib.auth.models import User
from django.test import Client

from connector.management.commands.serve import player_urls
from connector.models import RefusedHost
from connector.services import hosts
from connector.settings import machine_host_names


def lan_addresses() -> list[str]:
    return [
        address.address
        for addresses in psutil.net_if_addrs().values()
        for address in addresses
        if address.family == socket.AF_INET and not address.address.startswith("127.")
    ]


def test_the_machines_names_and_addresses_are_found() -> None:
    found = machine_host_names()
    assert found[:3] == ["localhost", "127.0.0.1", "[::1]"]
    assert socket.gethostname().lower() in found
    for address in lan_addresses():
        assert address in found


@pytest.fixture
def found_hosts(settings):  # type: ignore[no-untyped-def]
    settings.ALLOWED_HOSTS = machine_host_names()
    settings.ALLOWED_HOSTS_FOUND = True
    hosts.forget()
    yield settings.ALLOWED_HOSTS
    hosts.forget()


@pytest.mark.django_db
def test_a_player_using_the_lan_address_or_host_name_is_answered(
    found_hosts, client: Client
) -> None:  # type: ignore[no-untyped-def]
    for name in [socket.gethostname(), *lan_addresses()]:
        answer = client.get("/ical/unknown.ics", HTTP_HOST=f"{name}:8000")
        assert answer.status_code == 404, name  # answered: the calendar just does not exist


@pytest.mark.django_db
def test_a_refused_host_gets_a_plain_400_naming_the_setting(
    found_hosts, client: Client, admin_user: User
) -> None:  # type: ignore[no-untyped-def]
    answer = client.get("/ical/lobby.ics", HTTP_HOST="signage.example.lan:8000")
    assert answer.status_code == 400
    assert answer["Content-Type"] == "text/plain; charset=utf-8"
    text = answer.content.decode()
    assert "ALLOWED_HOSTS" in text and "'signage.example.lan'" in text
    for _ in range(5):  # players retry: counted, not one row each
        client.get("/ical/lobby.ics", HTTP_HOST="signage.example.lan")
    [refused] = RefusedHost.objects.all()
    assert refused.name == "signage.example.lan"

    client.force_login(admin_user)
    page = client.get("/status/", HTTP_HOST="localhost").content.decode()
    assert "Host names refused in the last day" in page
    assert "signage.example.lan" in page and "ALLOWED_HOSTS" in page


def test_serve_prints_the_feed_urls_players_should_use(settings) -> None:  # type: ignore[no-untyped-def]
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]", "signage-pc", "192.168.1.10"]
    lines = player_urls("0.0.0.0:8000")
    assert "  http://signage-pc:8000/ical/<calendarId>.ics" in lines
    assert "  http://192.168.1.10:8000/ical/<calendarId>.ics" in lines
    assert not any("127.0.0.1" in line for line in lines)
    assert player_urls("10.0.0.5:9000")[1:] == ["  http://10.0.0.5:9000/ical/<calendarId>.ics"]
