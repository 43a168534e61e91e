"""HTTP to the API that waits out its restarts: :class:`PatientClient`, for runs that kill the API."""

from __future__ import annotations

import collections
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import urllib3

from shared.jobs.records import TERMINAL_STATUSES


class PatientClient:
    """HTTP to the API that waits out restarts: refused connections and 503s are retried.

    Only requests that are safe to repeat are retried on a broken connection: GETs, and a
    job submission that carries an Idempotency-Key.
    """

    def __init__(self, base_url: str, give_up_s: float = 120.0) -> None:
        self.base_url = base_url
        self.give_up_s = give_up_s
        self.http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2.0, read=30.0))
        self.outages = 0  # requests that had to be retried
        self.statuses: collections.Counter[int] = collections.Counter()

    def request(self, method: str, path: str, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        deadline = time.monotonic() + self.give_up_s
        while True:
            try:
                response = self.http.request(method, self.base_url + path, redirect=False, **kwargs)
                self.statuses[response.status] += 1
                if response.status != 503:
                    return response
            except urllib3.exceptions.HTTPError:
                self.statuses[0] += 1
            self.outages += 1
            if time.monotonic() > deadline:
                raise TimeoutError(f"{method} {path} kept failing for {self.give_up_s:.0f} s")
            time.sleep(0.2)

    def json(self, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        response = self.request(method, path, **kwargs)
        return response.status, json.loads(response.data)

    def submit(self, filename: str, data: bytes, content_type: str = "application/zip") -> dict[str, Any]:
        key = uuid.uuid4().hex
        status, job = self.json(
            "POST", "/v1/jobs", fields={"file": (filename, data, content_type)}, headers={"Idempotency-Key": key}
        )
        if status != 202:
            raise RuntimeError(f"submission refused: {status} {job}")
        return job

    def job(self, job_id: str) -> dict[str, Any]:
        status, job = self.json("GET", f"/v1/jobs/{job_id}")
        if status != 200:
            raise RuntimeError(f"GET job {job_id}: {status} {job}")
        return job

    def wait_for_end(
        self,
        job_id: str,
        timeout_s: float,
        poll_s: float = 0.3,
        on_poll: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            if job["status"] in TERMINAL_STATUSES:
                return job
            if on_poll is not None:
                on_poll(job)
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout_s:.0f} s: {job['counts']}")
            time.sleep(poll_s)
