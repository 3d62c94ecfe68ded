"""Shared fixtures. Each area keeps its fixtures in its own plugin module."""

import pytest

from tests.fakes.base import FakeCA

pytest_plugins = [
    "tests.fixtures.users",
    "tests.fixtures.exchange",
    "tests.fixtures.identity",
    "tests.fixtures.feed",
    "tests.fixtures.network",
    "tests.fixtures.browser",
]


@pytest.fixture(scope="session", autouse=True)
def trusted_fake_ca() -> FakeCA:
    """Every fake serves TLS with a throwaway CA that requests, msal and exchangelib trust."""
    ca = FakeCA.get()
    ca.trust()
    return ca
