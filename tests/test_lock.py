"""Installs are reproducible: the lock files pin every dependency of pyproject.toml, with hashes.

scripts/run installs requirements.lock and scripts/test requirements-test.lock
(both add requirements-kerberos.lock where the system can build gssapi)
(``pip install --require-hashes``), then the project itself without
dependencies; scripts/lock writes both from pyproject.toml. A dependency added
to pyproject.toml without running scripts/lock fails here, not on a clean machine.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)(?: \\)?$")


def pins(lock: str) -> dict[str, str]:
    """Name → version of a pip-compile --generate-hashes file; every pin must carry hashes."""
    lines = (ROOT / lock).read_text().splitlines()
    found: dict[str, str] = {}
    for number, line in enumerate(lines):
        match = PIN.match(line)
        if match is None:
            continue
        name, version = canonicalize_name(match[1]), match[2]
        assert lines[number + 1].strip().startswith("--hash=sha256:"), f"{lock}: {name} unhashed"
        found[name] = version
    assert found, f"{lock} pins nothing"
    return found


def project() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def requirements(*extras: str) -> list[Requirement]:
    listed = list(project()["dependencies"])
    for extra in extras:
        listed += project()["optional-dependencies"][extra]
    return [Requirement(item) for item in listed]


@pytest.mark.parametrize(
    ("lock", "extras"),
    [
        ("requirements.lock", ()),
        ("requirements-test.lock", ("test",)),
        ("requirements-kerberos.lock", ("kerberos",)),
    ],
)
def test_the_lock_pins_every_dependency_within_its_bounds(lock: str, extras: tuple[str]) -> None:
    pinned = pins(lock)
    for requirement in requirements(*extras):
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{lock} lacks {name}: run scripts/lock"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{lock} pins {name}=={pinned[name]}, outside {requirement.specifier}: run scripts/lock"
        )


@pytest.mark.parametrize("lock", ["requirements-test.lock", "requirements-kerberos.lock"])
def test_the_tests_and_kerberos_run_on_the_application_versions(lock: str) -> None:
    application, other = pins("requirements.lock"), pins(lock)

    assert {name: other.get(name) for name in application} == application


@pytest.mark.parametrize(
    ("script", "lock"),
    [
        ("scripts/run", "requirements.lock"),
        ("scripts/test", "requirements-test.lock"),
        ("scripts/run", "requirements-kerberos.lock"),
        ("scripts/test", "requirements-kerberos.lock"),
    ],
)
def test_the_scripts_install_from_the_lock(script: str, lock: str) -> None:
    text = (ROOT / script).read_text()

    assert f"pip install --quiet --require-hashes -r {lock}" in text
    assert "pip install --quiet --no-deps -e ." in text
    assert re.search(r"pip install [^\n]*-e \.(?!\S)", text.replace("--no-deps -e .", "")) is None
