"""The exactly-once audit of a finished job: what it left in Redis and storage, against what it must.

:func:`audit_job` checks exact counts, one final status per item, a result object for every
done item and for no other, every result a whole JPEG (:func:`jpeg_problem`) that decodes to
the input's size, and no stray objects under the job. ``bench/soak.py``,
``bench/compose_check.py`` and ``tests/test_faults.py`` audit their jobs with it.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import cast

import cv2
import numpy as np
import redis

from shared.jobs.records import TERMINAL_STATUSES
from shared.jobs.store import JobStore
from shared.settings import Settings
from shared.storage.object_keys import job_prefix, result_key
from shared.storage.object_store import Storage

TENANT = "local"  # open mode on loopback
# Codes an item may fail with when faults, not its content, stopped it.
FAULT_FAILURE_CODES = frozenset({"processing_failed", "unavailable"})


@dataclass
class Audit:
    """What a finished job left behind, and every way it breaks the guarantees."""

    status: str
    total: int
    done: int
    failed: int
    result_objects: int
    redone_items: int  # items processed more than once (a crash or a fault interrupted them)
    failure_codes: dict[str, int]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def audit_job(
    settings: Settings,
    job_id: str,
    expected_total: int,
    expected_shape: tuple[int, int] | None = None,
    allowed_failures: Iterable[str] = FAULT_FAILURE_CODES,
    tenant: str = TENANT,
    threads: int = 8,
) -> Audit:
    """Check a terminal job against Redis and storage (both must be up)."""
    assert settings.redis_url is not None  # a running stack's settings name its Redis
    client = redis.Redis.from_url(settings.redis_url)
    jobs = JobStore(client, settings)
    storage = Storage(settings)
    job = jobs.get(job_id)
    keys = jobs.keys.job(job_id)
    statuses = {int(k): v.decode() for k, v in cast("dict[bytes, bytes]", client.hgetall(keys.statuses)).items()}
    errors = {int(k): json.loads(v)["code"] for k, v in client.hgetall(keys.errors).items()}
    attempts = [int(v) for v in client.hvals(keys.attempts)]
    problems: list[str] = []

    if job.status not in TERMINAL_STATUSES or not job.expanded:
        problems.append(f"job is {job.status}, expanded={job.expanded}")
    if job.total != expected_total:
        problems.append(f"total {job.total} != {expected_total} entries submitted")
    if job.done + job.failed != job.total:
        problems.append(f"done {job.done} + failed {job.failed} != total {job.total}")
    if set(statuses) != set(range(job.total)):
        problems.append(
            f"{len(set(range(job.total)) - set(statuses))} items without a final status, "
            f"{len(set(statuses) - set(range(job.total)))} statuses of unknown items"
        )
    done = sorted(i for i, s in statuses.items() if s == "done")
    failed = sorted(i for i, s in statuses.items() if s == "failed")
    if (len(done), len(failed)) != (job.done, job.failed):
        problems.append(
            f"counters (done {job.done}, failed {job.failed}) disagree with the item statuses "
            f"({len(done)}, {len(failed)}): an item was counted twice or not at all"
        )
    if set(errors) != set(failed):
        problems.append("failed items and recorded errors differ")
    codes = collections.Counter(errors.values())
    unexpected = set(codes) - set(allowed_failures)
    if unexpected:
        problems.append(f"unexpected failure codes {sorted(unexpected)}")

    prefix = job_prefix(tenant, job_id)
    listed = list(storage.iter_keys(prefix))
    if len(listed) != len(set(listed)):
        problems.append("storage lists a key twice")
    results = {k for k in listed if k.startswith(prefix + "results/")}
    expected = {result_key(tenant, job_id, i) for i in done}
    if results - expected:
        problems.append(
            f"{len(results - expected)} result objects for items not done, e.g. {sorted(results - expected)[:3]}"
        )
    if expected - results:
        problems.append(f"{len(expected - results)} done items without a result, e.g. {sorted(expected - results)[:3]}")
    stray = [k for k in listed if k not in results and k != prefix + "source" and not k.startswith(prefix + "inputs/")]
    if stray:
        problems.append(f"stray objects under the job: {stray[:3]}")

    def check(key: str) -> str | None:
        return jpeg_problem(storage.get_bytes(key), expected_shape)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for key, problem in zip(sorted(results), pool.map(check, sorted(results))):
            if problem:
                problems.append(f"{key}: {problem}")
    client.close()
    return Audit(
        status=job.status,
        total=job.total,
        done=job.done,
        failed=job.failed,
        result_objects=len(results),
        redone_items=sum(1 for a in attempts if a > 1),
        failure_codes=dict(codes),
        problems=problems,
    )


def jpeg_problem(data: bytes, expected_shape: tuple[int, int] | None = None) -> str | None:
    """Why ``data`` is not one whole JPEG (of ``expected_shape`` rows x columns), or None."""
    if len(data) == 0:
        return "zero bytes"
    if data[:3] != b"\xff\xd8\xff":
        return "no JPEG start marker"
    if data[-2:] != b"\xff\xd9":
        return "no JPEG end marker (cut short)"
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if pixels is None:
        return "does not decode"
    if expected_shape is not None and pixels.shape[:2] != tuple(expected_shape):
        return f"decodes to {pixels.shape[:2]}, not {tuple(expected_shape)}"
    return None
