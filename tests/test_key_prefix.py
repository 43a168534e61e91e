"""Services under different key prefixes (``COLORIZE_REDIS_KEY_PREFIX``) share one Redis database
without seeing each other's jobs or tasks."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from api.app import create_app
from shared.ids import new_id
from shared.jobs.bulk_lane import BulkLane
from shared.queue.contract import QUEUE
from shared.redis_keys import RedisKeys
from tests.integration_fixtures import with_own_keys

pytestmark = pytest.mark.integration


def png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((12, 16), 100, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_job_and_its_task_stay_under_the_prefix_of_their_service(app_settings, redis_client) -> None:
    ours, theirs = with_own_keys(app_settings), with_own_keys(app_settings)
    response = (
        create_app(ours)
        .test_client()
        .post("/v1/jobs", data={"file": (io.BytesIO(png()), "photo.png")}, content_type="multipart/form-data")
    )
    assert response.status_code == 202, response.json
    job_id = response.json["id"]

    keys = [key.decode() for key in redis_client.scan_iter(f"*{job_id}*")]
    assert f"{ours.redis_namespace}:job:{{{job_id}}}" in keys
    assert all(key.startswith(ours.redis_key_prefix) for key in keys), keys
    # The single image's chunk waits in this service's queue, and in no other.
    assert redis_client.llen(ours.redis_key_prefix + QUEUE) == 1
    assert redis_client.llen(theirs.redis_key_prefix + QUEUE) == 0
    for other in (theirs, app_settings):  # another prefix, and none
        assert create_app(other).test_client().get(f"/v1/jobs/{job_id}").status_code == 404


def test_the_bulk_lane_keeps_its_keys_under_the_prefix_of_its_service(app_settings, redis_client) -> None:
    ours = with_own_keys(app_settings)
    lane = BulkLane(redis_client, 60, namespace=ours.redis_namespace)
    tenants, jobs = ("acme", "globex"), (new_id(), new_id(), new_id())
    lane.push(tenants[0], jobs[0], [[0, 1], [2, 3]])
    lane.push(tenants[0], jobs[1], [[0]])
    lane.push(tenants[1], jobs[2], [[5]])

    def lane_keys() -> list[str]:
        return [key.decode() for key in redis_client.scan_iter(f"*{ours.redis_namespace}:{{bulk}}:*")]

    waiting = lane_keys()
    assert len(waiting) == 1 + 2 + 3, waiting  # the tenants, each tenant's jobs, each job's chunks
    # Tenants take turns, then each tenant's jobs; the claim script builds the keys of those it meets.
    claimed = [lane.claim(f"turn-{n}") for n in range(5)]
    assert [(c.job_id, c.indices) for c in claimed if c is not None] == [
        (jobs[0], [0, 1]),
        (jobs[2], [5]),
        (jobs[1], [0]),
        (jobs[0], [2, 3]),
    ]
    assert claimed[4] is None
    held = lane_keys()
    assert sorted(held) == sorted(RedisKeys(ours.redis_namespace).bulk_turn(f"turn-{n}") for n in range(4))
    assert all(key.startswith(ours.redis_key_prefix) for key in waiting + held)
