"""The service's HTTP API as the benchmarks drive it: jobs submitted in the request or by
presigned upload, polled until they end (stdlib only, so nothing of the project's client is timed)."""

from __future__ import annotations

import json
import tempfile
import time
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

TERMINAL = ("succeeded", "partially_succeeded", "failed", "canceled")
# Room for the multipart framing around a file sent in the job request.
FORM_OVERHEAD = 4096


def request(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> dict[str, Any]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=120) as response:
        document: dict[str, Any] = json.loads(response.read() or b"{}")
        return document


def submit_bytes(api: str, filename: str, data: bytes, headers: dict[str, str] | None = None) -> str:
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    body = head + data + f"\r\n--{boundary}--\r\n".encode()
    job = request(
        "POST", f"{api}/v1/jobs", body, {**(headers or {}), "Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    return str(job["id"])


def submit_presigned(api: str, path: Path) -> str:
    """Big archives: presigned multipart upload straight to storage, then the job."""
    size = path.stat().st_size
    upload = request(
        "POST",
        f"{api}/v1/uploads",
        json.dumps({"filename": path.name, "size": size}).encode(),
        {"Content-Type": "application/json"},
    )
    with path.open("rb") as handle:
        if "url" in upload:
            urllib.request.urlopen(
                urllib.request.Request(upload["url"], data=handle, method="PUT", headers={"Content-Length": str(size)}),
                timeout=600,
            )
        else:
            part_size = upload["multipart"]["part_size"]
            parts = []
            for part in upload["multipart"]["parts"]:
                chunk = handle.read(part_size)
                with urllib.request.urlopen(
                    urllib.request.Request(part["url"], data=chunk, method="PUT"), timeout=600
                ) as r:
                    parts.append({"part_number": part["part_number"], "etag": r.headers["ETag"]})
            request(
                "POST",
                f"{api}/v1/uploads/{upload['upload_id']}/complete",
                json.dumps({"parts": parts}).encode(),
                {"Content-Type": "application/json"},
            )
    job = request(
        "POST",
        f"{api}/v1/jobs",
        json.dumps({"upload_id": upload["upload_id"], "filename": path.name}).encode(),
        {"Content-Type": "application/json"},
    )
    return str(job["id"])


def submit_archive(api: str, filename: str, data: bytes, request_limit: int) -> str:
    """An archive in the job request where it fits the API's ``request_limit``, else (as the
    project's client does) by presigned upload: the API refuses a larger request outright."""
    if len(data) + FORM_OVERHEAD <= request_limit:
        return submit_bytes(api, filename, data)
    with tempfile.TemporaryDirectory(prefix="colorize-bench-") as tmp:
        path = Path(tmp) / filename
        path.write_bytes(data)
        return submit_presigned(api, path)


def wait_for(api: str, job_id: str, poll_s: float = 0.1, headers: dict[str, str] | None = None) -> dict[str, Any]:
    while True:
        job = request("GET", f"{api}/v1/jobs/{job_id}", headers=headers)
        if job["status"] in TERMINAL:
            return job
        time.sleep(poll_s)


def finished_at(job: dict[str, Any]) -> float:
    """When the job finished, in seconds since the epoch."""
    return datetime.fromisoformat(job["finished_at"]).timestamp()
