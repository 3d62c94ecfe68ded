"""What reading configuration.xml yields: plain specs, and its problems as "line N: message".

The reader's steps (safexml → walk → validation, glued in reader.py) and the
planner (plan.py) share these classes; none of them holds XML or a model, so
the planner never sees the file's syntax.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from accounts.models import AppRegistration
from connector.xmlconfig import params as P

if TYPE_CHECKING:
    from lxml import etree


@dataclass(frozen=True, order=True)
class Problem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class ConfigError(Exception):
    """An invalid file; ``problems`` lists every problem found, in file order."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(set(problems))
        super().__init__("\n".join(str(problem) for problem in self.problems))


@dataclass
class HttpAuth:
    """<authentication type="http-authentication">: a service account."""

    scheme: str
    username: str
    password: str | None  # None: not in the file (kept when the account exists); "": none
    line: int
    lines: dict[str, int] = field(default_factory=dict)  # model field → line


@dataclass
class OAuth:
    """<authentication type="oauth2-client-credentials"> or "oauth2-delegated"."""

    flow: str  # AppRegistration.Flow value
    tenant: str
    client_id: str
    client_secret: str | None  # None: not in the file (kept when the registration exists)
    secret_element: bool  # <clientsecret> present: its expires= is what the file says
    secret_expires: dt.date | None
    authority: str
    account: str
    line: int
    lines: dict[str, int] = field(default_factory=dict)  # model field → line

    @property
    def type_name(self) -> str:
        if self.flow == AppRegistration.Flow.DELEGATED:
            return "oauth2-delegated"
        return "oauth2-client-credentials"


@dataclass
class ServerSpec:
    server_id: str
    type: str
    base_uri: str = ""
    label: str = ""
    autodiscover: str = ""
    auth: HttpAuth | OAuth | None = None
    line: int = 0
    lines: dict[str, int] = field(default_factory=dict)  # model field → line


@dataclass
class CalendarSpec:
    calendar_id: str
    server_id: str
    line: int
    values: dict[str, Any] = field(default_factory=lambda: dict(P.CALENDAR_DEFAULTS))
    password: str | None = None  # None: not in the file
    feed_key: str | None = None  # None: not in the file
    resources: list[str] = field(default_factory=list)
    filter: dict[str, Any] = field(default_factory=lambda: dict(P.FILTER_DEFAULTS))
    alarms: dict[str, tuple[str, int]] = field(default_factory=dict)  # edge → (related, offset)
    lines: dict[str, int] = field(default_factory=dict)  # param name → line
    resource_lines: list[int] = field(default_factory=list)


@dataclass
class Configuration:
    servers: list[ServerSpec]
    calendars: list[CalendarSpec]


class ProblemLog:
    """Collects problems instead of stopping, so that one upload shows every mistake."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def problem(self, where: etree._Element | int, message: str) -> None:
        line = where if isinstance(where, int) else (where.sourceline or 1)
        self.problems.append(Problem(line, message))
