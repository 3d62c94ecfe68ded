"""Reading configuration.xml into plain specs, with every problem as "line N: message".

Three steps, each in its own module:

- safexml.py parses the bytes: a size limit (``CONFIG_MAX_BYTES``), no DTD,
  no entity, no external reference (an uploaded file is untrusted);
- walk.py walks the elements by local name (real files use prefixes and
  namespaces inconsistently) into specs (specs.py), the calendar <param>s
  through param_values.py;
- validation.py checks the specs across the file and by the models' own
  validation.

Every step collects its problems rather than stopping, so that one upload
shows every mistake. plan.py and the package import the specs from here.
"""

from __future__ import annotations

from connector.xmlconfig.safexml import parse_xml
from connector.xmlconfig.specs import (
    CalendarSpec,
    ConfigError,
    Configuration,
    HttpAuth,
    OAuth,
    Problem,
    ServerSpec,
)
from connector.xmlconfig.validation import Checker
from connector.xmlconfig.walk import Reader

__all__ = [
    "CalendarSpec",
    "ConfigError",
    "Configuration",
    "HttpAuth",
    "OAuth",
    "Problem",
    "ServerSpec",
    "read_configuration",
]


def read_configuration(data: bytes) -> Configuration:
    """Parse and check a configuration.xml; ConfigError lists every problem."""
    root = parse_xml(data)
    reader = Reader()
    config = reader.read(root)
    checker = Checker()
    checker.check(config)
    # ConfigError sorts the problems by line: the two lists need no merging.
    problems = reader.problems + checker.problems
    if problems:
        raise ConfigError(problems)
    return config
