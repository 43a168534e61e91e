"""Session-wide real services: one embedded Redis and one SeaweedFS S3 server per test run.

Fixtures, from the bottom up:

- ``settings``: defaults with a temporary data directory, no service URLs.
- ``redis_server`` / ``s3_server``: the embedded servers, started once, stopped at the end.
- ``service_settings``: ``settings`` with the URLs of both servers filled in; build API and
  worker fixtures on this one (``service_settings.with_overrides(...)`` for variants).
- ``storage``: a ``Storage`` on the test bucket; ``redis_client``: a client of the server.

Tests share the servers, so each keeps to keys of its own (fresh ids, its own prefixes).
Workers and the API on a port come from the plugin ``tests.integration_fixtures``.

A test that talks to a real service (these servers, workers, an HTTP server, a browser) is
marked ``integration``; one that uses the fixtures above without the mark is refused at
collection, so that ``-m "not integration"`` runs where none of those services can start.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cli.embedded_services import RedisServer, SeaweedS3Server, free_port
from shared.settings import Settings
from shared.storage.object_store import Storage

pytest_plugins = ["tests.integration_fixtures", "tests.job_state_fixtures"]

TEST_BUCKET = "colorize-test"
# Every fixture that starts or reaches a real service depends on one of these.
SERVICE_FIXTURES = frozenset({"redis_server", "s3_server", "rabbitmq_server"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    unmarked = [
        item.nodeid
        for item in items
        if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("integration") is None
    ]
    if unmarked:
        raise pytest.UsageError("tests that use real services must be marked integration:\n  " + "\n  ".join(unmarked))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("colorize-data")


@pytest.fixture(scope="session")
def settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, s3_bucket=TEST_BUCKET, api_port=free_port())


@pytest.fixture(scope="session")
def redis_server(settings: Settings) -> Iterator[RedisServer]:
    with RedisServer(settings.data_dir / "redis") as server:
        yield server


@pytest.fixture(scope="session")
def s3_server(settings: Settings) -> Iterator[SeaweedS3Server]:
    server = SeaweedS3Server(
        settings.data_dir / "seaweedfs",
        access_key=settings.aws_access_key_id,
        secret_key=settings.aws_secret_access_key,
        bucket=settings.s3_bucket,
    )
    with server:
        yield server


@pytest.fixture(scope="session")
def service_settings(settings: Settings, redis_server: RedisServer, s3_server: SeaweedS3Server) -> Settings:
    return settings.with_overrides(redis_url=redis_server.url, s3_endpoint_url=s3_server.endpoint_url)


@pytest.fixture(scope="session")
def storage(service_settings: Settings) -> Storage:
    store = Storage(service_settings)
    store.ensure_bucket()
    return store


@pytest.fixture(scope="session")
def redis_client(service_settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(service_settings.redis_url)
    yield client
    client.close()
