"""A calendar's <param> elements into its spec: each value checked and converted.

Parameter names are matched case-insensitively against the table in
params.py, which also says where each value goes (the calendar, its filter, an
alarm) and of what kind it is (whole number, true/false, a comma list of known
words, one of a few choices). A value that cannot be read is a problem with
its line.
"""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError
from lxml import etree

from connector.validators import CommaListOf, normalize_list
from connector.xmlconfig import params as P
from connector.xmlconfig.elements import ElementReader
from connector.xmlconfig.specs import CalendarSpec


class _Invalid:
    """Marks a value that could not be read (its problem is already recorded)."""


_INVALID: Any = _Invalid()


def read_param(
    reader: ElementReader, element: etree._Element, spec: CalendarSpec, what: str
) -> None:
    line = element.sourceline or 1
    attrs = reader.attributes(element, ("name",))
    raw_name = attrs.get("name", "").strip()
    if not raw_name:
        reader.problem(element, f"{what}: a <param> needs a name attribute")
        return
    param = P.BY_KEY.get(raw_name.lower())
    if param is None:
        reader.problem(
            element,
            f"{what}: unknown param {raw_name!r}; known params: "
            + ", ".join(known.name for known in P.PARAMS),
        )
        return
    value = reader.text(element, strip=param.kind != "secret")
    if param.section == "resource":
        spec.resources.append(value.strip())
        spec.resource_lines.append(line)
        return
    if param.name in spec.lines:
        reader.problem(
            element,
            f"{what}: param {param.name} given twice (also line {spec.lines[param.name]})",
        )
        return
    spec.lines[param.name] = line
    parsed = convert(reader, element, param, value, what)
    if parsed is _INVALID:
        return
    if param.section == "calendar":
        if param.field == "password":
            spec.password = parsed or None
        elif param.field == "feed_key":
            spec.feed_key = parsed.strip() or None
        else:
            spec.values[param.field] = parsed
    elif param.section == "filter":
        spec.filter[param.field] = parsed
    else:
        edge, _, part = param.field.partition(".")
        related, offset = spec.alarms.get(edge, P.ALARM_DEFAULTS[edge])
        spec.alarms[edge] = (parsed, offset) if part == "related" else (related, parsed)


def convert(
    reader: ElementReader, element: etree._Element, param: P.Param, value: str, what: str
) -> Any:
    if param.kind == "int":
        if not re.fullmatch(r"[+-]?\d+", value):
            reader.problem(element, f"{what}: {param.name}: {value!r} is not a whole number")
            return _INVALID
        return int(value)
    if param.kind == "bool":
        lowered = value.lower()
        if lowered in P.TRUE_WORDS:
            return True
        if lowered in P.FALSE_WORDS:
            return False
        reader.problem(element, f"{what}: {param.name}: {value!r} is not true or false")
        return _INVALID
    if param.kind == "list":
        try:
            CommaListOf(list(param.choices), param.what)(value)
        except ValidationError as exc:
            reader.problem(element, f"{what}: {param.name}: {' '.join(exc.messages)}")
            return _INVALID
        return normalize_list(value, list(param.choices))
    if param.kind == "choice":
        for choice in param.choices:
            if value.lower() == choice.lower():
                return choice
        reader.problem(
            element,
            f"{what}: {param.name}: {value!r} is not one of {', '.join(param.choices)}",
        )
        return _INVALID
    return value
