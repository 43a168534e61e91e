"""A chunk's Redis round trips do not grow with its number of items.

Chunks run in this process against the real Redis and SeaweedFS, through a Redis client whose
connections count what they send: one send is one round trip (a pipeline or a script is one).
The job store, the storage quota and jobs' destinations use it. A job with a destination writes
its results to a second SeaweedFS server, a tenant's own store.
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np
import pytest
import redis
from cryptography.fernet import Fernet

from cli.embedded_services import SeaweedS3Server
from shared.ids import new_id
from shared.imaging.output_options import OutputFormat
from shared.jobs.records import JobStatus, NewItem
from shared.jobs.store import JobStore
from shared.settings import Settings
from shared.storage.destinations import Destination, DestinationStore
from shared.storage.item_inputs import ItemInput
from shared.storage.object_keys import input_object_key, input_object_name, result_key
from shared.tenancy.storage_quota import StoredBytes, job_owner
from shared.tenancy.stored_connections import Connection, ConnectionStore
from tests.integration_fixtures import TEST_MODEL, with_own_keys
from worker.chunk_pipeline import ChunkRun
from worker.context import WorkerContext

pytestmark = pytest.mark.integration

TENANT = "local"
CUSTOMER_KEY, CUSTOMER_SECRET, CUSTOMER_BUCKET = "customer-key-id", "customer-secret-7Rw2", "customer-results"


class CountingConnection(redis.Connection):
    sent = 0

    def send_packed_command(self, command, check_health: bool = True) -> None:
        CountingConnection.sent += 1
        super().send_packed_command(command, check_health)


class NoTasks:
    """Stands in for the Celery app: a chunk that runs to its end publishes nothing."""

    def send_task(self, *args, **kwargs) -> None:
        raise AssertionError(f"unexpected task {args}")


def image(i: int) -> bytes:
    x = np.linspace(20, 230, 24 + i, dtype=np.float32)[None, :].repeat(20, axis=0)
    return cv2.imencode(".png", x.astype(np.uint8))[1].tobytes()


def counting_context(settings: Settings) -> WorkerContext:
    ctx = WorkerContext(settings, NoTasks())
    client = redis.Redis.from_url(settings.redis_url, connection_class=CountingConnection)
    ctx.jobs = JobStore(client, settings, listeners=ctx.jobs.listeners)
    ctx.stored = StoredBytes(client, settings.quotas, namespace=settings.redis_namespace)
    ctx.destinations = DestinationStore(client, settings)
    return ctx


def round_trips_of_a_chunk(ctx: WorkerContext, items: int, destination: Destination | None = None) -> int:
    """Colorize a job of ``items`` items as one chunk; the round trips the chunk took."""
    job_id = new_id()
    ctx.jobs.create_job(
        tenant=TENANT, model=TEST_MODEL, temperature=None, source_kind="tar", source_key="unused", job_id=job_id
    )
    if destination is not None:
        ctx.destinations.set(job_id, destination)
    images = [image(i) for i in range(items)]  # stored back to back, as the expander stores a tar's chunk
    name = input_object_name(0, items - 1)
    ctx.storage.put_bytes(input_object_key(TENANT, job_id, name), b"".join(images))
    offsets = np.cumsum([0] + [len(data) for data in images])
    ctx.jobs.add_items(
        job_id,
        [
            NewItem(
                i, f"{i}.png", f"{i}.jpg", 100, input=ItemInput(name, offset=int(offsets[i]), length=len(images[i]))
            )
            for i in range(items)
        ],
    )
    ctx.jobs.end_expansion(job_id)

    CountingConnection.sent = 0
    ChunkRun(ctx, job_id).run(list(range(items)))
    sent = CountingConnection.sent

    job = ctx.jobs.get(job_id)
    assert (job.status, job.done) == (JobStatus.SUCCEEDED, items)
    if destination is not None:
        bucket = ctx.references.bucket(TENANT, destination.connection)
        assert all(bucket.get(f"{destination.prefix}{i}.jpg", 10**6) for i in range(items))
    results = sum(ctx.storage.size(result_key(TENANT, job_id, i, OutputFormat.JPEG)) for i in range(items))
    assert ctx.stored.counted(TENANT, job_owner(job_id)) == results  # every result in the quota, once
    return sent


@pytest.fixture(scope="module")
def chunk_settings(app_settings: Settings, storage) -> Settings:
    # No worker reads these keys: nothing else touches the jobs. The tenant's store is on loopback.
    return with_own_keys(app_settings).with_overrides(
        connection_key=Fernet.generate_key().decode(), webhook_allow_private=True
    )


@pytest.fixture(scope="module")
def customer_s3(tmp_path_factory) -> Iterator[SeaweedS3Server]:
    server = SeaweedS3Server(
        tmp_path_factory.mktemp("customer-s3"),
        access_key=CUSTOMER_KEY,
        secret_key=CUSTOMER_SECRET,
        bucket=CUSTOMER_BUCKET,
    )
    with server:
        yield server


def store_connection(ctx: WorkerContext, customer_s3: SeaweedS3Server) -> Destination:
    connection = Connection(
        name="results",
        endpoint_url=customer_s3.endpoint_url,
        region="us-east-1",
        bucket=CUSTOMER_BUCKET,
        created_at=0.0,
        access_key_id=CUSTOMER_KEY,
        secret_access_key=CUSTOMER_SECRET,
    )
    ConnectionStore(ctx.redis, ctx.settings).create(TENANT, connection)
    return Destination(connection.name, prefix="out/")


def test_a_chunk_of_one_batch_takes_four_round_trips_whatever_its_size(chunk_settings) -> None:
    ctx = counting_context(chunk_settings.with_overrides(chunk_size=16, batch_size=16))
    round_trips_of_a_chunk(ctx, 3)  # warm: scripts loaded into Redis, model loaded, connection open
    few, many = round_trips_of_a_chunk(ctx, 2), round_trips_of_a_chunk(ctx, 16)
    # begin_chunk (start the job, sort and begin the items), the job's destination (it has none),
    # then the results' bytes counted in the quota and one record of all outcomes.
    assert few == many == 4


def test_batches_add_round_trips_and_items_none(chunk_settings) -> None:
    # Before each batch after the first is inferred, one call records what has ended so far and
    # begins the following batch (its status answers the cancel check); before the last batch it
    # is made only when something has ended meanwhile (from the third batch on, the results of
    # the one before last). A record of stored results is preceded by one call counting their
    # bytes. So the round trips follow the number of batches, never the items.
    ctx = counting_context(chunk_settings.with_overrides(chunk_size=16, batch_size=4))
    round_trips_of_a_chunk(ctx, 3)
    by_batches = {
        batches: (round_trips_of_a_chunk(ctx, 4 * batches - 3), round_trips_of_a_chunk(ctx, 4 * batches))
        for batches in (1, 2, 4)
    }
    assert by_batches == {1: (4, 4), 2: (5, 5), 4: (10, 10)}


def test_a_destination_adds_round_trips_per_chunk_not_per_item(chunk_settings, customer_s3) -> None:
    ctx = counting_context(chunk_settings.with_overrides(chunk_size=16, batch_size=16))
    destination = store_connection(ctx, customer_s3)
    round_trips_of_a_chunk(ctx, 3, destination)
    few, many = round_trips_of_a_chunk(ctx, 2, destination), round_trips_of_a_chunk(ctx, 16, destination)
    # The four of a chunk without one, and as it starts its items' output paths.
    assert few == many == 5
