"""Job state in the real Redis for tests of the stores themselves: a settable clock, a key
namespace of each test's own, and a job store built from them.

A plugin (``pytest_plugins`` in ``tests/conftest.py``); a module that needs other settings
defines its own ``store``.
"""

from __future__ import annotations

import time

import pytest

from shared.ids import new_id
from shared.jobs.store import JobStore
from shared.settings import Settings

TTL_S = 3600
STORE_SETTINGS = Settings(result_ttl_s=TTL_S)


class Clock:
    """Settable time; starts at the real time because Redis expires keys by its own clock."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def namespace() -> str:
    # A namespace of its own keeps a test's purge index and heartbeats apart from any service
    # sharing the Redis server.
    return f"test-{new_id()}"


@pytest.fixture
def store(redis_client, clock: Clock, namespace: str) -> JobStore:
    return JobStore(redis_client, STORE_SETTINGS, clock=clock, namespace=namespace)
