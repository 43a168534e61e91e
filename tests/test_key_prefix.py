"""Services under different key prefixes (``COLORIZE_REDIS_KEY_PREFIX``) share one Redis database
without seeing each other's jobs or tasks."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from api.app import create_app
from shared.queue.contract import QUEUE
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
