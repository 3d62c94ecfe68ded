"""The Exchange version of a server: learned once, kept on the Server row.

exchangelib probes the version (a ConvertId whose answer carries
ServerVersionInfo) in every new process, before the first request; the EWS
source probes once per server and stores the build in ``Server.ews_version``,
from where every later connection starts (pool.py). A server that answers in
another version than the one stored (an upgrade, a move) has it replaced; one
that refuses the stored version's schema has it forgotten and learned again.
How the probe is walked down for servers that refuse a version exchangelib's
way does not expect is in protocol.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from exchangelib import Account
from exchangelib.errors import TransportError
from exchangelib.version import Build, Version

from connector.core.trace import Step
from connector.models import Server
from connector.sources.ews.protocol import (
    guess_older_version,
    no_version_told,
    refused_for_its_version,
)

if TYPE_CHECKING:
    from connector.sources.ews.pool import Connection

# What the source reads with when Exchange will not say its version (see learn_version).
ASSUMED_VERSION = Version(build=Build(14, 2), api_version="Exchange2010_SP2")


def stored_version(text: str) -> Version | None:
    """The version of ``Server.ews_version`` ('15.1.2507.6'); None when nothing is stored."""
    try:
        parts = [int(part) for part in text.split(".")]
        return Version(build=Build(*parts[:4]))
    except (TypeError, ValueError):
        return None


def learn_version(server: Server, connection: Connection, step: Step) -> None:
    """The server's version on the connection, probed (and stored) unless already known."""
    if connection.config.version and connection.config.version.build:
        step.note(f"Exchange {connection.config.version.build} (remembered)")
        return
    # exchangelib's probe (a ConvertId whose answer carries ServerVersionInfo): once.
    try:
        version = connection.protocol.version
    except TransportError as exc:
        if refused_for_its_version(exc):
            version = guess_older_version(connection.protocol)
        elif no_version_told(exc):
            # The probe's answers carried no ServerVersionInfo (a server or proxy that
            # serves no ConvertId): read as the oldest Exchange with every property the
            # view asks for; the calendar view's own answer names the real version.
            connection.protocol.config.version = ASSUMED_VERSION
            step.note(f"Exchange version not told; reading as {ASSUMED_VERSION.api_version}")
            return
        else:
            raise
    step.note(f"Exchange {version.build} (learned)")
    store_version(server, str(version.build))


def remember_version(server: Server, account: Account) -> None:
    """Store the version the account's answers named, when it is news."""
    build = account.version.build if account.version else None
    # An Account's version is a copy of the protocol's sharing its Build: the very
    # ASSUMED_VERSION build means no answer named another.
    if build is ASSUMED_VERSION.build:
        return  # nothing learned: never store a guess
    if build is not None and str(build) != server.ews_version:
        store_version(server, str(build))


def forget_version(server: Server, connection: Connection) -> None:
    """Exchange refused the schema of the remembered version: learn it again next time."""
    with connection.lock:
        connection.protocol.config.version = None
        connection.accounts.clear()  # each Account keeps its copy of the version
    store_version(server, "")


def store_version(server: Server, build: str) -> None:
    # .update() leaves Server.updated alone: learning is not a configuration change.
    Server.objects.filter(pk=server.pk).update(ews_version=build)
    server.ews_version = build
