"""Sources of calendar data: EWS, Microsoft Graph and iCalendar files.

Each source has one public method, ``fetch(resource, window) -> list[EventRecord]``,
and raises only ``SourceError``; ``upstream_key`` names the credentials it
reads with, so that a room fetched once feeds every calendar with that key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from connector.core.records import EventRecord, Window
    from connector.core.trace import Trace
    from connector.models import Calendar, Server


class Source(Protocol):
    upstream_key: str

    def fetch(
        self, resource: str, window: Window, *, include_body: bool = False
    ) -> list[EventRecord]: ...


def open_source(
    server: Server, *, calendar: Calendar | None = None, trace: Trace | None = None
) -> Source:
    """The source for a server, with the calendar's own credentials when it has some."""
    from accounts.crypto import UndecryptableSecret
    from connector.core.errors import SourceError

    try:
        _read_secrets(server, calendar)
        return _open_source(server, calendar=calendar, trace=trace)
    except UndecryptableSecret as exc:
        # Credentials load (and decrypt) here: a database restored without its key.
        raise SourceError(
            "The stored password or client secret cannot be decrypted.",
            code="undecryptable-secret",
            step="connect",
            hint=(
                "FIELD_ENCRYPTION_KEY is not the key it was stored with: set it back, or put "
                "the new key first and the old one after a comma; otherwise enter the "
                "password or client secret again in the admin."
            ),
        ) from exc


def _read_secrets(server: Server, calendar: Calendar | None) -> None:
    """Decrypt the secrets this source will use now, so a wrong key fails here, plainly.

    Secrets decrypt when first read (accounts.fields); without this, one that no
    key reads would surface later, deep in a token request or a connection.
    """
    if calendar is not None and calendar.username:
        calendar.password  # noqa: B018
        return
    if server.service_account_id and server.service_account is not None:
        server.service_account.password  # noqa: B018
    if server.app_registration_id and server.app_registration is not None:
        server.app_registration.client_secret  # noqa: B018
        server.app_registration.refresh_token  # noqa: B018


def _open_source(
    server: Server, *, calendar: Calendar | None = None, trace: Trace | None = None
) -> Source:
    if server.type == "ews":
        from connector.sources.ews import EwsSource

        return EwsSource(server, calendar=calendar, trace=trace)
    if server.type == "graph":
        from connector.sources.graph import GraphSource

        return GraphSource(server, calendar=calendar, trace=trace)
    if server.type == "ics":
        from connector.sources.ics import IcsSource

        return IcsSource(server, calendar=calendar, trace=trace)
    raise ValueError(f"unknown server type {server.type!r}")
