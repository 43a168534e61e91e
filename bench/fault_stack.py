"""A private stack whose parts can be killed and restarted: the ground of fault injection.

:class:`FaultStack` runs Redis, SeaweedFS (and RabbitMQ with ``broker="rabbitmq"``) on a data
directory of its own, with Celery workers (``cli.worker_process.WorkerProcess``) and the API under gunicorn
(:class:`ApiProcess`) on top; each can be killed and brought back on the same port and data,
so every client finds it again. ``bench/soak.py`` and ``tests/test_faults.py`` inject their
faults through it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Self

import redis
import urllib3

from api.serving import gunicorn_args
from cli.embedded_rabbitmq import RabbitMQServer
from cli.embedded_services import LOOPBACK, RedisServer, SeaweedS3Server, free_port, kill_process_group
from cli.local_stack import spawn_child
from cli.worker_process import REAP_TIMEOUT_S, START_TIMEOUT_S, WorkerProcess
from shared.jobs.store import JobStore
from shared.jobs.upkeep import WorkerHeartbeats
from shared.settings import Settings
from shared.storage.object_store import Storage


class ApiProcess:
    """The API under gunicorn on a fixed port, so a restarted one answers at the same address."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.url = f"http://{settings.api_host}:{settings.api_port}"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout_s: float = START_TIMEOUT_S) -> ApiProcess:
        settings = self.settings
        command = [sys.executable, "-m", "gunicorn", *gunicorn_args(f"{settings.api_host}:{settings.api_port}", 1)]
        self._log = self.log_path.open("ab")
        self.process = spawn_child(settings, command, self._log)
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
            kill_process_group(self.process, REAP_TIMEOUT_S)
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None


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
        return redis.Redis.from_url(self.redis_server.url, socket_timeout=10, socket_connect_timeout=5)

    def job_store(self) -> JobStore:
        return JobStore(self.redis_client(), self.settings)

    def storage(self) -> Storage:
        return Storage(self.settings)

    def crash_redis(self, down_s: float = 1.0) -> None:
        """SIGKILL redis-server (no shutdown, no final fsync), wait ``down_s``, start it on the same data."""
        client = redis.Redis.from_url(self.redis_server.url, socket_timeout=5)
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
                    concurrency=concurrency,
                    append_log=True,
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

    def __exit__(self, *exc_info: object) -> None:
        self.close()
