"""Soak under faults: one big archive through the real stack while its parts are killed at random.

    python bench/soak.py [--images 10000] [--workers 3] [--kill-every 10] [--seed 0]
    python bench/soak.py --images 300 --kills-per-kind 1      (the small run CI does)

Starts private Redis, SeaweedFS, the API (gunicorn) and Celery workers on a temporary data
directory, submits one zip of small JPEGs, and while the job runs injects faults one after
another:

- ``worker``: SIGKILL of a whole worker (pool processes included), then a fresh one;
- ``redis``:  SIGKILL of redis-server, restarted on the same port and data directory;
- ``s3``:     SeaweedFS stopped (SIGTERM, SIGKILL after 0.5 s), started again;
- ``api``:    SIGKILL of gunicorn, started again on the same port.

When the job has ended it audits the outcome (:func:`audit_job`): exact counts, one status
per item, a result object for every done item and for no other, every result a whole JPEG
that decodes to the input's size, no stray objects. It prints the counts, the faults of each
kind, the duration and the audit; the exit status is 0 when the audit passes.

``tests/test_faults.py`` uses :class:`FaultStack` and :func:`audit_job` for its scenarios
and runs :func:`run_soak` small.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import cv2
import numpy as np
import redis
import urllib3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.serving import gunicorn_args
from cli.embedded_rabbitmq import RabbitMQServer
from cli.embedded_services import LOOPBACK, RedisServer, SeaweedS3Server, free_port
from cli.local_stack import child_environment
from shared.job_store import JobStore
from shared.jobs import TERMINAL_STATUSES
from shared.object_keys import job_prefix, result_key
from shared.settings import PROJECT_ROOT, Settings
from shared.storage import Storage
from shared.upkeep import WORKER_STALE_AFTER_S, WorkerHeartbeats
from worker.celery_app import QUEUE

TENANT = "local"  # open mode on loopback
FAULT_KINDS = ("worker", "redis", "s3", "api")
# Codes an item may fail with when faults, not its content, stopped it.
FAULT_FAILURE_CODES = frozenset({"processing_failed", "unavailable"})
START_TIMEOUT_S = 90.0


# --- processes ----------------------------------------------------------------------------


class WorkerProcess:
    """One ``celery worker`` (main process and pool) in its own process group."""

    def __init__(
        self, settings: Settings, name: str, log_dir: Path, modules: Sequence[str] = (), concurrency: int = 1
    ) -> None:
        self.settings = settings
        self.name = name
        self.modules = tuple(modules)
        self.concurrency = concurrency
        self.log_path = log_dir / f"{name}.log"
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker.celery_app",
            "worker",
            "-Q",
            QUEUE,
            "-n",
            f"{name}@%h",
            "-c",
            str(concurrency),
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "INFO",
        ]
        for module in modules:
            command += ["-I", module]
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=child_environment(settings, os.environ),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self, heartbeats: WorkerHeartbeats, timeout_s: float = START_TIMEOUT_S) -> None:
        """Until the worker records its heartbeat (its pool has loaded the model by then)."""
        name = f"{socket.gethostname()}:{self.pid}"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(f"worker {self.name} exited:\n{_tail(self.log_path)}")
            try:
                if name in heartbeats.live(WORKER_STALE_AFTER_S):
                    return
            except redis.RedisError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"worker {self.name} not ready within {timeout_s:.0f} s:\n{_tail(self.log_path)}")

    def kill(self) -> None:
        """SIGKILL to the whole group: the machine vanished mid-task."""
        _kill_group(self.process)

    def stop(self) -> None:
        if self.alive:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        self._log.close()


class ApiProcess:
    """The API under gunicorn on a fixed port, so a restarted one answers at the same address."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.url = f"http://{settings.api_host}:{settings.api_port}"
        self.process: subprocess.Popen | None = None
        self._log = None

    def start(self, timeout_s: float = START_TIMEOUT_S) -> ApiProcess:
        settings = self.settings
        command = [sys.executable, "-m", "gunicorn", *gunicorn_args(f"{settings.api_host}:{settings.api_port}", 1)]
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=child_environment(settings, os.environ),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        http = urllib3.PoolManager(retries=False, timeout=2.0)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the API exited:\n{_tail(self.log_path)}")
            try:
                if http.request("GET", f"{self.url}/healthz").status == 200:
                    return self
            except urllib3.exceptions.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"the API did not answer within {timeout_s:.0f} s:\n{_tail(self.log_path)}")

    def kill(self) -> None:
        if self.process is not None:
            _kill_group(self.process)
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait(timeout=30)


def _tail(path: Path, size: int = 3000) -> str:
    try:
        return path.read_bytes()[-size:].decode("utf-8", "replace")
    except OSError:
        return ""


class FaultStack:
    """Private Redis and SeaweedFS (and RabbitMQ with ``broker="rabbitmq"``), workers and an API,
    each of which can be killed and brought back.

    ``settings`` gives everything but the service URLs and the API address, which the stack
    fills in; ports stay the same across restarts so every client finds the service again.
    """

    def __init__(
        self, data_dir: Path, settings: Settings, worker_modules: Sequence[str] = (), broker: str = "redis"
    ) -> None:
        self.data_dir = Path(data_dir)
        self.log_dir = self.data_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.worker_modules = tuple(worker_modules)
        self.redis_server = RedisServer(self.data_dir / "redis")
        self.s3_server = SeaweedS3Server(
            self.data_dir / "seaweedfs",
            access_key=settings.aws_access_key_id,
            secret_key=settings.aws_secret_access_key,
            bucket=settings.s3_bucket,
        )
        self.rabbitmq = RabbitMQServer(self.data_dir / "rabbitmq") if broker == "rabbitmq" else None
        self.settings = settings.with_overrides(
            redis_url=self.redis_server.url,
            s3_endpoint_url=self.s3_server.endpoint_url,
            broker_url=self.rabbitmq.url() if self.rabbitmq else None,
            api_host=LOOPBACK,
            api_port=free_port(),
            data_dir=self.data_dir,
        )
        self.workers: list[WorkerProcess] = []
        self.api: ApiProcess | None = None
        self._started_workers = 0

    # services

    def start(self) -> Self:
        try:
            self.redis_server.start()
            self.s3_server.start()
            if self.rabbitmq is not None:
                self.rabbitmq.start()
        except BaseException:
            self.close()
            raise
        return self

    def redis_client(self) -> redis.Redis:
        return redis.Redis.from_url(self.settings.redis_url, socket_timeout=10, socket_connect_timeout=5)

    def job_store(self) -> JobStore:
        return JobStore(self.redis_client(), self.settings)

    def storage(self) -> Storage:
        return Storage(self.settings)

    def crash_redis(self, down_s: float = 1.0) -> None:
        """SIGKILL redis-server (no shutdown, no final fsync), wait ``down_s``, start it on the same data."""
        client = redis.Redis.from_url(self.settings.redis_url, socket_timeout=5)
        pid = int(client.info("server")["process_id"])
        client.close()
        os.kill(pid, signal.SIGKILL)
        self.redis_server.stop()  # reaps it
        time.sleep(down_s)
        self.redis_server.start()

    def crash_rabbitmq(self, down_s: float = 1.0) -> None:
        """SIGKILL the RabbitMQ node (no shutdown), wait ``down_s``, start it on the same data."""
        assert self.rabbitmq is not None, "a stack with broker='rabbitmq'"
        self.rabbitmq.kill()
        time.sleep(down_s)
        self.rabbitmq.start()

    def restart_s3(self, down_s: float = 1.0) -> None:
        """Stop SeaweedFS (SIGKILL after 0.5 s of SIGTERM), wait ``down_s``, start it on the same data."""
        self.s3_server.stop(timeout_s=0.5)
        time.sleep(down_s)
        self.s3_server.start()

    # workers

    def start_workers(
        self,
        count: int,
        settings: Settings | None = None,
        modules: Sequence[str] | None = None,
        concurrency: int = 1,
        wait: bool = True,
    ) -> list[WorkerProcess]:
        """``count`` workers with ``settings`` (default: the stack's), loading ``modules`` (default:
        the stack's worker modules) as well; waits until each records its heartbeat."""
        started = []
        for _ in range(count):
            name = f"w{self._started_workers}"
            self._started_workers += 1
            started.append(
                WorkerProcess(
                    settings or self.settings,
                    name,
                    self.log_dir,
                    self.worker_modules if modules is None else modules,
                    concurrency,
                )
            )
        self.workers.extend(started)
        if wait:
            heartbeats = WorkerHeartbeats(self.redis_client(), namespace=self.settings.redis_namespace)
            for worker in started:
                worker.wait_ready(heartbeats)
        return started

    def live_workers(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.alive]

    def kill_worker(self, worker: WorkerProcess, replace: bool = True) -> WorkerProcess | None:
        """SIGKILL ``worker``; with ``replace``, start one like it and return it once ready."""
        worker.kill()
        if not replace:
            return None
        return self.start_workers(1, worker.settings, worker.modules, worker.concurrency)[0]

    def stop_workers(self) -> None:
        for worker in self.workers:
            if worker.alive:
                worker.process.terminate()
        for worker in self.workers:
            worker.stop()
        self.workers.clear()

    # API

    def start_api(self) -> ApiProcess:
        """The API process, started unless it runs already."""
        if self.api is None:
            self.api = ApiProcess(self.settings, self.log_dir / "api.log")
        if self.api.process is None:
            self.api.start()
        return self.api

    def restart_api(self, down_s: float = 0.5) -> None:
        assert self.api is not None
        self.api.kill()
        time.sleep(down_s)
        self.api.start()

    def close(self) -> None:
        self.stop_workers()
        if self.api is not None:
            self.api.kill()
        self.s3_server.stop(timeout_s=2)
        self.redis_server.stop()
        if self.rabbitmq is not None:
            self.rabbitmq.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()


# --- inputs and API client ----------------------------------------------------------------


def small_jpegs(count: int, side: int = 32, seed: int = 0) -> list[bytes]:
    """``count`` distinct greyscale JPEGs of ``side`` x ``side`` pixels (gradients with noise)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.0, 1.0, side, dtype=np.float32)
    images = []
    for _ in range(count):
        a, b = rng.uniform(-120, 120, 2)
        pixels = 128 + a * ramp[None, :] + b * ramp[:, None] - (a + b) / 2 + rng.normal(0, 8, (side, side))
        ok, data = cv2.imencode(".jpg", np.clip(pixels, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 85])
        assert ok
        images.append(data.tobytes())
    return images


def zip_archive(files: Iterable[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # JPEG does not compress
        for name, data in files:
            archive.writestr(name, data)
    return buffer.getvalue()


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

    def request(self, method: str, path: str, **kwargs) -> urllib3.BaseHTTPResponse:
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

    def json(self, method: str, path: str, **kwargs) -> tuple[int, dict]:
        response = self.request(method, path, **kwargs)
        return response.status, json.loads(response.data)

    def submit(self, filename: str, data: bytes, content_type: str = "application/zip") -> dict:
        key = uuid.uuid4().hex
        status, job = self.json(
            "POST", "/v1/jobs", fields={"file": (filename, data, content_type)}, headers={"Idempotency-Key": key}
        )
        if status != 202:
            raise RuntimeError(f"submission refused: {status} {job}")
        return job

    def job(self, job_id: str) -> dict:
        status, job = self.json("GET", f"/v1/jobs/{job_id}")
        if status != 200:
            raise RuntimeError(f"GET job {job_id}: {status} {job}")
        return job

    def wait_for_end(
        self, job_id: str, timeout_s: float, poll_s: float = 0.3, on_poll: Callable[[dict], None] | None = None
    ) -> dict:
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


# --- audit --------------------------------------------------------------------------------


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
    client = redis.Redis.from_url(settings.redis_url)
    jobs = JobStore(client, settings)
    storage = Storage(settings)
    job = jobs.get(job_id)
    keys = jobs.keys.job(job_id)
    statuses = {int(k): v.decode() for k, v in client.hgetall(keys.statuses).items()}
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


# --- soak ---------------------------------------------------------------------------------


def soak_settings(base: Settings, models_dir: Path, model: str) -> Settings:
    """Settings for a soak: quick redelivery after a kill, time limits far above a chunk's time."""
    return base.with_overrides(
        models_dir=models_dir,
        model=model,
        device="cpu",
        engine_threads=1,
        worker_concurrency=1,
        chunk_size=8,
        batch_size=4,
        visibility_timeout_s=15,
        task_soft_time_limit_s=8,
        task_time_limit_s=10,
        item_max_attempts=3,
    )


@dataclass
class Fault:
    kind: str
    at_s: float  # since submission
    progress: float  # share of items finished when it was injected
    took_s: float  # until the service (or a replacement worker) was back


@dataclass
class SoakReport:
    images: int
    workers: int
    seconds: float
    faults: list[Fault]
    audit: Audit
    client_retries: int
    client_statuses: dict[int, int]

    @property
    def kills(self) -> dict[str, int]:
        counts = collections.Counter(f.kind for f in self.faults)
        return {kind: counts.get(kind, 0) for kind in FAULT_KINDS}

    def lines(self) -> list[str]:
        a = self.audit
        out = [
            (
                f"images {self.images}, workers {self.workers}, duration {self.seconds:.1f} s "
                f"({self.images / self.seconds:.1f} images/s including faults)"
            ),
            (
                f"job {a.status}: total {a.total}, done {a.done}, failed {a.failed} {a.failure_codes or ''}, "
                f"result objects {a.result_objects}, items redone after a fault {a.redone_items}"
            ),
            "faults: " + ", ".join(f"{kind} {n}" for kind, n in self.kills.items()),
        ]
        for fault in self.faults:
            out.append(
                f"  {fault.at_s:7.1f} s  {fault.kind:<6} at {fault.progress:6.1%} progress, back after "
                f"{fault.took_s:.1f} s"
            )
        statuses = ", ".join(f"{'refused' if s == 0 else s}: {n}" for s, n in sorted(self.client_statuses.items()))
        out.append(f"API client: {self.client_retries} retried requests ({statuses})")
        out.append("audit: " + ("PASS" if a.ok else "FAIL"))
        out += [f"  - {p}" for p in a.problems[:50]]
        return out


def inject(stack: FaultStack, kind: str, rng: random.Random) -> None:
    """One fault of ``kind``; returns once the service (or a replacement worker) is back."""
    if kind == "worker":
        stack.kill_worker(rng.choice(stack.live_workers()))
    elif kind == "redis":
        stack.crash_redis(down_s=rng.uniform(0.5, 2.0))
    elif kind == "s3":
        stack.restart_s3(down_s=rng.uniform(0.5, 2.0))
    elif kind == "api":
        stack.restart_api(down_s=rng.uniform(0.2, 1.0))
    else:
        raise ValueError(f"unknown fault {kind!r}")


def fault_plan(kills_per_kind: int | None, kinds: Sequence[str], rng: random.Random) -> list[str] | None:
    """A shuffled list with each kind ``kills_per_kind`` times; None: random kinds until the job ends."""
    if kills_per_kind is None:
        return None
    plan = [kind for kind in kinds for _ in range(kills_per_kind)]
    rng.shuffle(plan)
    return plan


class FaultInjector(threading.Thread):
    """Injects faults one after another while the job runs, so that clients meet them.

    With a ``plan`` the n-th fault of k comes once the job's progress (set by the poller)
    reaches n / (k + 1); without one, a random kind follows after an exponentially distributed
    pause of mean ``kill_every_s``.
    """

    def __init__(
        self,
        stack: FaultStack,
        plan: list[str] | None,
        kinds: Sequence[str],
        kill_every_s: float,
        rng: random.Random,
        log: Callable[[str], None],
    ) -> None:
        super().__init__(name="fault-injector", daemon=True)
        self.stack, self.plan, self.kinds, self.kill_every_s, self.rng, self.log = (
            stack,
            plan,
            list(kinds),
            kill_every_s,
            rng,
            log,
        )
        self.started = time.monotonic()
        self.progress = 0.0
        self.faults: list[Fault] = []
        self.error: BaseException | None = None
        self.stopping = threading.Event()

    def _next_kind(self, next_random: float) -> str | None:
        if self.plan is not None:
            n = len(self.faults)
            if n < len(self.plan) and self.progress >= (n + 1) / (len(self.plan) + 1):
                return self.plan[n]
            return None
        return self.rng.choice(self.kinds) if time.monotonic() >= next_random else None

    def run(self) -> None:
        next_random = self.started + self.rng.expovariate(1 / self.kill_every_s)
        try:
            while not self.stopping.is_set():
                kind = self._next_kind(next_random)
                if kind is None:
                    self.stopping.wait(0.05)
                    continue
                began, progress = time.monotonic(), self.progress
                inject(self.stack, kind, self.rng)
                took = time.monotonic() - began
                self.faults.append(Fault(kind, began - self.started, progress, took))
                self.log(f"{began - self.started:7.1f} s  {kind:<6} killed at {progress:.1%}, back after {took:.1f} s")
                next_random = time.monotonic() + self.rng.expovariate(1 / self.kill_every_s)
        except BaseException as exc:  # noqa: BLE001  # reported by the caller, after the job
            self.error = exc

    def finish(self) -> None:
        """Stop after the fault in progress, with every service back."""
        self.stopping.set()
        self.join()
        if self.error is not None:
            raise RuntimeError("injecting a fault failed") from self.error


def run_soak(
    stack: FaultStack,
    images: int,
    workers: int,
    kills_per_kind: int | None = None,
    kill_every_s: float = 10.0,
    kinds: Sequence[str] = FAULT_KINDS,
    seed: int = 0,
    side: int = 32,
    timeout_s: float = 3600.0,
    worker_settings: Settings | None = None,
    log: Callable[[str], None] = print,
) -> SoakReport:
    """Run one archive of ``images`` JPEGs through ``stack`` under faults and audit the outcome.

    With ``kills_per_kind`` each kind is injected that many times, spread evenly over the
    job's progress; otherwise a random kind about every ``kill_every_s`` seconds until it ends.
    Workers run with ``worker_settings`` (default: the stack's) and no fault hooks. The job is
    polled through the API all along, so polls meet every outage.
    """
    rng = random.Random(seed)
    stack.start_workers(workers, worker_settings, modules=())
    stack.start_api()
    client = PatientClient(stack.api.url, give_up_s=300)
    archive = zip_archive(
        (f"roll{i // 1000:02d}/frame{i:05d}.jpg", data) for i, data in enumerate(small_jpegs(images, side, seed))
    )
    log(f"submitting {images} images ({len(archive) / 1e6:.1f} MB zip) to {workers} workers")
    started = time.monotonic()
    job_id = client.submit("soak.zip", archive)["id"]
    injector = FaultInjector(stack, fault_plan(kills_per_kind, kinds, rng), kinds, kill_every_s, rng, log)
    injector.start()

    def record_progress(job: dict) -> None:
        injector.progress = (job["counts"]["done"] + job["counts"]["failed"]) / images

    try:
        job = client.wait_for_end(job_id, timeout_s, poll_s=0.1, on_poll=record_progress)
    finally:
        injector.finish()
    seconds = time.monotonic() - started
    log(f"job {job['status']} after {seconds:.1f} s; auditing")
    audit = audit_job(stack.settings, job_id, images, expected_shape=(side, side))
    return SoakReport(images, workers, seconds, injector.faults, audit, client.outages, dict(client.statuses))


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--kill-every", type=float, default=10.0, help="mean seconds between faults")
    parser.add_argument(
        "--kills-per-kind",
        type=int,
        default=None,
        help="inject each kind exactly this often, spread over the job (instead of --kill-every)",
    )
    parser.add_argument(
        "--kinds", default=",".join(FAULT_KINDS), help="comma-separated subset of " + ",".join(FAULT_KINDS)
    )
    parser.add_argument("--model", default="default", help="model name in --models-dir")
    parser.add_argument("--models-dir", type=Path, default=PROJECT_ROOT / "models")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--keep", action="store_true", help="keep the data directory (logs) afterwards")
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    data_dir = Path(tempfile.mkdtemp(prefix="colorize-soak-"))
    # SIGTERM (a timeout, a CI cancel) unwinds like Ctrl-C, so the services are stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    settings = soak_settings(Settings.from_env({}), args.models_dir, args.model)
    with FaultStack(data_dir, settings) as stack:
        report = run_soak(
            stack,
            args.images,
            args.workers,
            args.kills_per_kind,
            args.kill_every,
            kinds,
            args.seed,
            timeout_s=args.timeout,
        )
    print("\n".join(report.lines()), flush=True)
    if args.keep or not report.audit.ok:
        print(f"data and logs: {data_dir}")
    else:
        import shutil

        shutil.rmtree(data_dir, ignore_errors=True)
    return 0 if report.audit.ok else 1


if __name__ == "__main__":
    sys.exit(main())
