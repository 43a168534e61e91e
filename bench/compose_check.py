"""The deployment of docker-compose.yml checked end to end: run by ``scripts/compose-check``.

    python bench/compose_check.py [--images 1200] -- docker compose -p NAME -f docker-compose.yml -f ...

With the images built and the port variables set (the script does both), it starts the stack
and waits until every service is healthy, creates an API key inside the api container (as the
README says to), submits a zip through the public port (nginx), scales the CPU workers to three,
kills one of them (SIGKILL) while the job runs, and once the job has ended checks every result:
the job's counts, each item ended exactly once and was begun at most ``item_max_attempts`` times
(a redo only when the worker killed held items: :func:`attempts_check`), a result object for
every item and a whole JPEG of the input's size in each (:func:`bench.job_audit.audit_job`,
against Redis and the store on their loopback ports), every result downloaded as a client would (presigned URLs and the zip through
the proxy), and RabbitMQ's queues quorum queues with nothing left in them. It prints a summary
with the time of each step; the exit status is 0 when every check passed. Tearing the stack
down is the calling script's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.job_audit import audit_job, jpeg_problem
from bench.jpeg_archive import small_jpegs, zip_archive
from client import Client
from shared.jobs.store import JobStore
from shared.settings import Settings

TENANT = "compose-check"
SIDE = 48
WORKERS = 3
HEALTH_TIMEOUT_S = 600
JOB_TIMEOUT_S = 900
# Services that run until stopped, each with a health check (s3-init is a one-shot).
LONG_RUNNING = ("proxy", "api", "worker", "webhooks", "rabbitmq", "redis", "s3")


class Compose:
    """``docker compose`` for one project (the command line, files and project name given)."""

    def __init__(self, command: Sequence[str]) -> None:
        self.command = list(command)

    def run(self, *args: str, timeout_s: float = 600, check: bool = True) -> str:
        done = subprocess.run([*self.command, *args], capture_output=True, text=True, timeout=timeout_s, check=False)
        if check and done.returncode != 0:
            raise RuntimeError(f"compose {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return done.stdout

    def containers(self) -> list[dict[str, Any]]:
        """``compose ps --all`` as one dict per container (compose prints one JSON object a line)."""
        out = self.run("ps", "--all", "--format", "json").strip()
        if out.startswith("["):
            listed: list[dict[str, Any]] = json.loads(out)
            return listed
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def running(self, service: str) -> list[dict[str, Any]]:
        return [c for c in self.containers() if c["Service"] == service and c["State"] == "running"]


class Report:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.lines: list[str] = []
        self.failures: list[str] = []

    def step(self, text: str) -> None:
        line = f"[{time.monotonic() - self.started:6.1f} s] {text}"
        self.lines.append(line)
        print(line, flush=True)

    def check(self, holds: bool, text: str) -> None:
        self.step(("ok    " if holds else "FAIL  ") + text)
        if not holds:
            self.failures.append(text)


def wait_until(what: str, ready: Callable[[], bool], timeout_s: float, poll_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not {what} within {timeout_s:.0f} s")
        time.sleep(poll_s)


def all_healthy(compose: Compose) -> bool:
    containers = compose.containers()
    by_service: dict[str, list[dict[str, Any]]] = {}
    for container in containers:
        by_service.setdefault(container["Service"], []).append(container)
    init = by_service.get("s3-init", [])
    if any(c["State"] == "exited" and c.get("ExitCode", 0) != 0 for c in init):
        raise RuntimeError("s3-init failed: " + compose.run("logs", "s3-init", check=False)[-2000:])
    return all(
        by_service.get(name) and all(c.get("Health") == "healthy" for c in by_service[name]) for name in LONG_RUNNING
    )


def host_settings() -> Settings:
    """The stack's Redis and store as this process reaches them (their loopback ports)."""
    env = os.environ
    return Settings(
        redis_url=f"redis://127.0.0.1:{env['LOOPBACK_REDIS_PORT']}/0",
        s3_endpoint_url=f"http://127.0.0.1:{env['S3_PORT']}",
        s3_bucket="colorize",
        aws_access_key_id=env.get("S3_ACCESS_KEY", "colorize"),
        aws_secret_access_key=env["S3_SECRET_KEY"],
    )


def healthy_workers(compose: Compose) -> int:
    return sum(1 for c in compose.running("worker") if c.get("Health") == "healthy")


def attempts(settings: Settings, job_id: str) -> list[int]:
    assert settings.redis_url is not None  # host_settings() names the stack's Redis
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5)
    try:
        jobs = JobStore(client, settings)
        return [int(v) for v in client.hvals(jobs.keys.job(job_id).attempts)]
    finally:
        client.close()


def attempts_check(tries: Sequence[int], images: int, max_attempts: int) -> tuple[bool, str]:
    """Whether the job's attempt counts (one per item begun) are those of a run where a worker
    died: every item begun, none more often than an item may be; with the line saying so.

    A redo is not required: the worker killed may have held no item at that moment (it had
    finished a chunk and not yet taken the next), and then every item ran once, as it should.
    That each item ended exactly once is the audit's check."""
    redone = sum(1 for t in tries if t > 1)
    holds = len(tries) == images and all(1 <= t <= max_attempts for t in tries)
    if redone:
        outcome = f"the killed worker's items were redone ({redone} items ran more than once)"
    else:
        outcome = "the killed worker held no item when it died: none needed a redo"
    return holds, f"{sum(tries)} attempts for {images} items, each at most {max_attempts}: {outcome}"


def check_downloads(report: Report, api: Client, job_id: str, images: int) -> None:
    with tempfile.TemporaryDirectory(prefix="compose-check-") as tmp:
        files = api.download(job_id, Path(tmp) / "items")
        problems = [
            f"{path.name}: {problem}" for path in files if (problem := jpeg_problem(path.read_bytes(), (SIDE, SIDE)))
        ]
        report.check(
            len(files) == images and not problems,
            f"{len(files)} results downloaded through presigned URLs, each a whole {SIDE}x{SIDE} JPEG"
            + (f" ({problems[:3]})" if problems else ""),
        )
        [archive] = api.download(job_id, Path(tmp) / "zip", as_zip=True)
        with zipfile.ZipFile(archive) as z:
            names = [n for n in z.namelist() if n.lower().endswith((".jpg", ".jpeg"))]
            decoded = [cv2.imdecode(np.frombuffer(z.read(n), np.uint8), cv2.IMREAD_COLOR) for n in names]
        whole = all(image is not None and image.shape[:2] == (SIDE, SIDE) for image in decoded)
        report.check(
            len(names) == images and whole,
            f"results.zip through the proxy: {len(names)} JPEGs ({archive.stat().st_size} bytes)",
        )


def check_broker(report: Report, compose: Compose) -> None:
    out = compose.run(
        "exec", "-T", "rabbitmq", "rabbitmqctl", "-q", "list_queues", "name", "type", "messages", "--formatter", "json"
    )
    queues = {q["name"]: q for q in json.loads(out)}
    lanes = ("colorize", "colorize.expansions", "colorize.bulk", "webhooks")
    report.check(
        all(queues.get(name, {}).get("type") == "quorum" for name in lanes),
        "RabbitMQ holds the lanes and webhooks as quorum queues: "
        + ", ".join(f"{name}={queues.get(name, {}).get('type')}" for name in lanes),
    )
    report.check(
        all(queues[name]["messages"] == 0 for name in lanes if name in queues),
        "nothing left in them: " + ", ".join(f"{n}={queues[n]['messages']}" for n in lanes if n in queues),
    )


def run(compose: Compose, images: int) -> Report:
    report = Report()
    settings = host_settings()
    public = f"http://127.0.0.1:{os.environ['API_PORT']}"

    report.step("docker compose up -d (one CPU worker to begin with)")
    compose.run("up", "-d", "--scale", "worker=1", timeout_s=900)
    wait_until("healthy", lambda: all_healthy(compose), HEALTH_TIMEOUT_S, poll_s=3)
    report.step("every service healthy: " + ", ".join(LONG_RUNNING) + "; s3-init done")

    out = compose.run("exec", "-T", "api", "colorize", "keys", "create", "--tenant", TENANT)
    token = out.strip().splitlines()[-1]
    report.check(bool(token), f"API key created inside the api container for tenant {TENANT}")

    api = Client(public, api_key=token, timeout=60)
    health = api.health()
    report.check(health.ready, f"GET /readyz through the proxy: ready {health.checks}")

    with tempfile.TemporaryDirectory(prefix="compose-check-") as tmp:
        archive = Path(tmp) / "frames.zip"
        names = [f"frames/{i:04d}.jpg" for i in range(images)]
        archive.write_bytes(zip_archive(zip(names, small_jpegs(images, SIDE, seed=7))))
        job = api.submit(archive)
    report.step(f"submitted {archive.name} ({images} JPEGs) through the proxy on {public}: job {job.id}")

    compose.run("up", "-d", "--no-recreate", "--scale", f"worker={WORKERS}", "worker", timeout_s=300)
    # Each worker's health check pings its own Celery node (heartbeats in Redis are named by host
    # and process id, which replicas on the host's network share).
    wait_until(f"{WORKERS} workers healthy", lambda: healthy_workers(compose) >= WORKERS, 300, poll_s=2)
    report.step(f"scaled to {WORKERS} CPU workers, each answering its health check")

    progress = api.job(job.id)
    if progress.is_terminal or progress.counts.done >= images * 0.8:
        raise RuntimeError(f"the job ran too fast to kill a worker mid-job ({progress.counts}); use more --images")
    victim = compose.running("worker")[-1]
    subprocess.run(["docker", "kill", "--signal", "KILL", victim["ID"]], check=True, capture_output=True)
    report.step(f"killed worker {victim['Name']} (SIGKILL) at {progress.counts.done}/{images} done")

    final = api.wait(job.id, poll_s=1.0, timeout_s=JOB_TIMEOUT_S)
    counts = final.counts
    report.check(
        final.status == "succeeded" and (counts.total, counts.done, counts.failed) == (images, images, 0),
        f"job {final.status}: total {counts.total}, done {counts.done}, failed {counts.failed}",
    )

    audit = audit_job(settings, job.id, images, (SIDE, SIDE), tenant=TENANT)
    report.check(
        audit.ok,
        f"audit: each item ended once, {audit.result_objects} result objects, every one a "
        f"whole {SIDE}x{SIDE} JPEG" + (f"; problems: {audit.problems[:5]}" if audit.problems else ""),
    )
    report.check(*attempts_check(attempts(settings, job.id), images, settings.item_max_attempts))
    check_downloads(report, api, job.id, images)
    check_broker(report, compose)
    report.check(
        len(compose.running("worker")) == WORKERS - 1,
        f"{len(compose.running('worker'))} workers still running after the kill",
    )
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1200, help="JPEGs in the archive (default 1200)")
    parser.add_argument("compose", nargs=argparse.REMAINDER, help="-- and the docker compose command line")
    args = parser.parse_args(argv)
    command = args.compose[1:] if args.compose[:1] == ["--"] else args.compose
    if not command:
        parser.error("give the docker compose command line after --")
    try:
        report = run(Compose(command), args.images)
    except Exception as exc:  # noqa: BLE001  # the command's boundary: any failure is a message and exit status 1
        print(f"compose check stopped: {exc}", file=sys.stderr)
        return 1
    print(
        f"\n{len(report.lines)} steps, {len(report.failures)} failed, "
        f"{time.monotonic() - report.started:.0f} s from compose up to the last check"
    )
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
