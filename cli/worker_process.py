"""One Celery worker of this project as a child process that can be killed like a lost machine.

Started in its own process group (``spawn_child``), so a kill takes its pool processes too;
ready once its heartbeat is live (it has loaded the model by then), or, on queues whose workers
record no heartbeat, once Celery logs that it is ready. The soak benchmark's fault stack and
the integration tests run their workers through it.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import redis

from cli.embedded_services import kill_process_group, stop_process
from cli.local_stack import celery_worker_command, spawn_child
from shared.jobs.upkeep import WORKER_STALE_AFTER_S, WorkerHeartbeats
from shared.queue.contract import QUEUE
from shared.settings import Settings

START_TIMEOUT_S = 90.0
# A killed worker not reaped by then fails the caller rather than hanging it.
REAP_TIMEOUT_S = 30.0
# A warm shutdown finishes the task in hand; one that takes longer is killed.
STOP_TIMEOUT_S = 15.0


class WorkerProcess:
    """``celery worker`` named ``name`` on ``queues``, logging to ``log_dir/<name>.log``.

    ``append_log``: a restarted worker of the same name adds to its log instead of replacing it.
    """

    def __init__(
        self,
        settings: Settings,
        name: str,
        log_dir: Path,
        modules: Sequence[str] = (),
        queues: str = QUEUE,
        pool: str = "prefork",
        concurrency: int = 1,
        append_log: bool = False,
    ) -> None:
        self.settings = settings
        self.name = name
        self.modules = tuple(modules)
        self.concurrency = concurrency
        self.log_path = log_dir / f"{name}.log"
        self.records_heartbeats = QUEUE in queues.split(",")
        command = celery_worker_command(queues, name, concurrency, pool, isolated=True, modules=self.modules)
        self._log = self.log_path.open("ab" if append_log else "wb")
        self.process: subprocess.Popen[bytes] = spawn_child(settings, command, self._log)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    @property
    def heartbeat_name(self) -> str:
        return f"{socket.gethostname()}:{self.pid}"

    def wait_ready(self, heartbeats: WorkerHeartbeats, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(f"worker {self.name} exited:\n{self.log_tail()}")
            try:
                if self._ready(heartbeats):
                    return
            except redis.RedisError:
                pass  # Redis still starting, or restarting under a fault test
            time.sleep(0.1)
        raise TimeoutError(f"worker {self.name} not ready within {timeout_s:.0f} s:\n{self.log_tail()}")

    def _ready(self, heartbeats: WorkerHeartbeats) -> bool:
        if self.records_heartbeats:
            return self.heartbeat_name in heartbeats.live(WORKER_STALE_AFTER_S)
        return b" ready." in self.log_path.read_bytes()

    def log_tail(self, size: int = 3000) -> str:
        try:
            return self.log_path.read_bytes()[-size:].decode("utf-8", "replace")
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL to the whole group, pool processes included: the machine vanished mid-task."""
        kill_process_group(self.process, REAP_TIMEOUT_S)

    def request_stop(self) -> None:
        """Warm shutdown: the worker finishes the task in hand, then exits."""
        if self.alive:
            self.process.terminate()

    def stop(self) -> None:
        stop_process(self.process, timeout_s=STOP_TIMEOUT_S)
        self._log.close()
