"""The house rules, read from the imports (parsed with ast, nothing is executed).

Calls go one way: entry points (views, admin, commands, tasks) → services →
pipeline → sources → tokens → models → core. A module may import its own
layer and the layers below it, never one above; docs/ARCHITECTURE.md draws it.
Lazy imports inside functions and TYPE_CHECKING imports count like the others:
a cycle hidden in a function is still a cycle.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("connector", "accounts")

# Lowest first. A module belongs to the layer of its longest matching prefix;
# what no prefix names is an entry point (views, admin, commands, tasks, urls...).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("connector.core",)),
    (
        "models",
        (
            "connector.models",
            "connector.validators",
            "accounts.models",
            "accounts.fields",
            "accounts.crypto",
            "accounts.forms",
        ),
    ),
    ("tokens", ("accounts.tokens",)),
    ("sources", ("connector.sources",)),
    ("pipeline", ("connector.pipeline",)),
    ("services", ("connector.services", "connector.xmlconfig", "accounts.keys")),
]
ENTRY = "entry points"
RANK = {name: rank for rank, (name, _) in enumerate([*LAYERS, (ENTRY, ())])}

# Routes one URL to two pages (the feed, or the console's trace): a URL module.
VIEW_ROUTERS = {"connector.views.legacy"}
SHARED_VIEW_HELPERS = {"connector.views.pages"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def project_modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" not in path.parts:
                found[module_name(path)] = path
    return found


def layer_of(module: str) -> str:
    best, length = ENTRY, -1
    for name, prefixes in LAYERS:
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > length:
                best, length = name, len(prefix)
    return best


def imports_of(module: str) -> set[str]:
    """The project modules that ``module`` imports (``from a import b`` names a.b if a module)."""
    path = project_modules()[module]
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                targets.add(candidate if candidate in project_modules() else base)
    return {target for target in targets if target.split(".")[0] in PACKAGES and target != module}


def all_imports() -> list[tuple[str, str]]:
    return [(module, target) for module in project_modules() for target in imports_of(module)]


def test_the_parser_sees_the_imports_it_judges() -> None:
    """Guard against a test that cannot fail: known edges are found, unknown names are not."""
    edges = set(all_imports())
    assert ("connector.views.feed", "connector.services.refresh") in edges
    assert ("connector.pipeline.build", "connector.core.errors") in edges
    assert layer_of("connector.sources.ews") == "sources"
    assert layer_of("connector.views.feed") == ENTRY
    assert layer_of("connector.core.trace") == "core"
    assert len(project_modules()) > 50


@pytest.mark.parametrize("module", sorted(project_modules()))
def test_imports_go_down_the_layers(module: str) -> None:
    upward = [
        f"{module} ({layer_of(module)}) imports {target} ({layer_of(target)})"
        for target in sorted(imports_of(module))
        if RANK[layer_of(target)] > RANK[layer_of(module)]
    ]
    assert not upward, "imports against the direction of the layers:\n" + "\n".join(upward)


def test_core_imports_nothing_of_the_project_but_itself() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, target in all_imports()
        if layer_of(module) == "core" and layer_of(target) != "core"
    ]
    assert not wrong, "\n".join(wrong)


def test_accounts_knows_nothing_of_connector_but_its_core() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, target in all_imports()
        if module.startswith("accounts") and target.startswith("connector")
        if layer_of(target) != "core"
    ]
    assert not wrong, "\n".join(wrong)


def test_views_and_admin_call_services_never_sources_tokens_or_the_pipeline() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, target in all_imports()
        if module.startswith(("connector.views", "connector.admin", "connector.management"))
        if layer_of(target) in ("sources", "tokens", "pipeline")
    ]
    assert not wrong, "\n".join(wrong)


def test_services_reach_exchange_only_through_the_pipeline() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, target in all_imports()
        if layer_of(module) == "services" and layer_of(target) in ("sources", "tokens")
    ]
    assert not wrong, "\n".join(wrong)


def test_views_share_helpers_through_one_module_only() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, target in all_imports()
        if module.startswith("connector.views") and module not in VIEW_ROUTERS
        if target.startswith("connector.views") and target not in SHARED_VIEW_HELPERS
    ]
    assert not wrong, "\n".join(wrong)


def test_the_admin_imports_no_view_module() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, target in all_imports()
        if module.startswith("connector.admin") and target.startswith("connector.views")
    ]
    assert not wrong, "\n".join(wrong)


def test_nothing_below_the_entry_points_imports_them() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, target in all_imports()
        if layer_of(module) != ENTRY and layer_of(target) == ENTRY
    ]
    assert not wrong, "\n".join(wrong)


def test_no_module_is_over_600_lines_without_saying_why() -> None:
    long = []
    for module, path in project_modules().items():
        text = path.read_text()
        lines = text.count("\n")
        docstring = ast.get_docstring(ast.parse(text)) or ""
        if lines > 600 and "Why this module is long:" not in docstring:
            long.append(f"{module}: {lines} lines")
    assert not long, (
        "split these, or say at their top 'Why this module is long: ...':\n" + "\n".join(long)
    )
