"""Elements of configuration.xml by their local name: the steps the walk is made of.

Real files use the prefixes ``fcc:`` and ``scc:`` inconsistently, with
namespace URIs that vary, or none at all: elements and attributes are matched
by their local name, case-insensitively. An entity reference left in the tree
(lxml keeps them unresolved) is a problem, never text.
"""

from __future__ import annotations

from lxml import etree

from connector.xmlconfig.specs import ProblemLog


def local_name(element: etree._Element) -> str:
    """'fcc:server', '{urn:x}server' and 'server' are all 'server'."""
    tag = element.tag
    if not isinstance(tag, str):
        return ""
    return tag.rpartition("}")[2].rpartition(":")[2].lower()


def shown(element: etree._Element) -> str:
    """The element as the file writes it, for messages."""
    tag = str(element.tag)
    if tag.startswith("{"):
        name = tag.rpartition("}")[2]
        return f"<{element.prefix}:{name}>" if element.prefix else f"<{name}>"
    return f"<{tag}>"


class ElementReader(ProblemLog):
    """Children, attributes and text of an element, each oddity recorded as a problem."""

    def children(self, element: etree._Element) -> list[etree._Element]:
        result = []
        for child in element:
            if isinstance(child.tag, str):
                result.append(child)
            elif child.tag is etree.Entity:  # type: ignore[comparison-overlap]
                self.problem(child, f"entity reference {child.text} is refused")
        return result

    def attributes(self, element: etree._Element, allowed: tuple[str, ...]) -> dict[str, str]:
        found: dict[str, str] = {}
        for name, value in element.attrib.items():
            key = str(name).rpartition("}")[2].rpartition(":")[2].lower()
            if key not in allowed:
                self.problem(element, f"unknown attribute {key!r} on {shown(element)}")
                continue
            found[key] = str(value)
        return found

    def text(self, element: etree._Element, *, strip: bool = True) -> str:
        for child in self.children(element):
            self.problem(child, f"{shown(child)} is not expected inside {shown(element)}")
        value = "".join(element.itertext())
        return value.strip() if strip else value
