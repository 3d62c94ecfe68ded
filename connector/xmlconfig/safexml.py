"""configuration.xml parsed safely: a size limit, no DTD, no entity, nothing fetched.

An uploaded file is untrusted: this refuses files over ``CONFIG_MAX_BYTES``,
DOCTYPE and ENTITY declarations (XXE, billion laughs) before lxml sees them,
and parses with entities unresolved and the network off. Every refusal is a
ConfigError with the line, as the rest of the reader reports.
"""

from __future__ import annotations

import re

from django.conf import settings
from lxml import etree

from connector.xmlconfig.specs import ConfigError, Problem

# A comment may mention anything; a declaration outside one is refused outright.
_DECLARATION = re.compile(rb"<!--.*?-->|<!\[CDATA\[.*?\]\]>|<!(DOCTYPE|ENTITY)", re.DOTALL)


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _refuse_declarations(data: bytes) -> list[Problem]:
    return [
        Problem(
            _line_of(data, match.start()),
            f"<!{match.group(1).decode()}> is refused: configuration.xml may not "
            "declare a DTD or entities",
        )
        for match in _DECLARATION.finditer(data)
        if match.group(1)
    ]


def _check_utf8(data: bytes) -> list[Problem]:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [Problem(_line_of(data, exc.start), "the file is not UTF-8 (save it as UTF-8)")]
    return []


def _parser(recover: bool = False) -> etree.XMLParser:
    # A new parser each time: lxml parsers keep an error log across documents.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        recover=recover,
    )


# libxml2 follows some messages with the text it could not read (up to the end
# of the file for an unterminated section): a message keeps its first line, this long.
_MESSAGE_LENGTH = 160
_OPEN_SECTION = {
    "ERR_CDATA_NOT_FINISHED": (
        b"<![CDATA[",
        b"]]>",
        "a CDATA section (<![CDATA[) is never closed with ]]>",
    ),
    "ERR_COMMENT_NOT_FINISHED": (b"<!--", b"-->", "a comment (<!--) is never closed with -->"),
}


def _syntax_problems(
    data: bytes, errors: list[etree._LogEntry], exc: etree.XMLSyntaxError
) -> list[Problem]:
    """One short "malformed XML" problem per error, not the file's text that follows it."""
    for entry in errors:
        section = _OPEN_SECTION.get(entry.type_name)
        if section is not None:
            # The parser reports the end of the file; the reader needs where it opens.
            # Everything after it is swallowed, so the later errors say nothing more.
            opening, closing, message = section
            return [Problem(_unclosed_line(data, opening, closing), f"malformed XML: {message}")]
    problems = [Problem(entry.line or 1, _malformed(entry.message)) for entry in errors]
    return problems or [Problem(exc.lineno or 1, _malformed(exc.msg))]


def _malformed(message: str) -> str:
    lines = (message or "").strip().splitlines()
    first = lines[0].strip() if lines else "unreadable"
    if len(first) > _MESSAGE_LENGTH:
        first = first[: _MESSAGE_LENGTH - 3] + "..."
    return f"malformed XML: {first}"


def _unclosed_line(data: bytes, opening: bytes, closing: bytes) -> int:
    """The line of the first section opened and never closed (1 when none is found)."""
    position = 0
    while (start := data.find(opening, position)) >= 0:
        end = data.find(closing, start + len(opening))
        if end < 0:
            return _line_of(data, start)
        position = end + len(closing)
    return 1


def parse_xml(data: bytes) -> etree._Element:
    """The root element, or ConfigError; never expands an entity or fetches anything."""
    limit = settings.CONFIG_MAX_BYTES
    if len(data) > limit:
        raise ConfigError(
            [
                Problem(
                    1,
                    f"the file is {len(data):,} bytes, over the limit of {limit:,} bytes "
                    "(CONFIG_MAX_BYTES); a configuration is a few kilobytes",
                )
            ]
        )
    if not data.strip():
        raise ConfigError([Problem(1, "the file is empty")])
    problems = _refuse_declarations(data) + _check_utf8(data)
    if problems:
        raise ConfigError(problems)
    parser = _parser()
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        # The parser's own log: the exception's may also hold errors of
        # documents parsed before in this thread.
        errors = [entry for entry in parser.error_log if entry.level_name in ("ERROR", "FATAL")]
        if errors and all(entry.type_name == "NS_ERR_UNDEFINED_NAMESPACE" for entry in errors):
            # Prefixes used without a namespace declaration: matching by local
            # name makes them harmless, so read the file anyway.
            root = etree.fromstring(data, _parser(recover=True))
        else:
            raise ConfigError(_syntax_problems(data, errors, exc)) from None
    if root is None:
        raise ConfigError([Problem(1, "malformed XML: no root element")])
    if root.getroottree().docinfo.doctype:
        raise ConfigError([Problem(1, "a DOCTYPE is refused in configuration.xml")])
    return root
