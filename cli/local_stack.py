"""The whole service on this machine: ``colorize serve`` and ``./scripts/serve``.

``LocalStack`` starts what the settings leave unset (Redis unless ``redis_url``, SeaweedFS
unless ``s3_endpoint_url``; see :mod:`cli.embedded_services`), keeps their data under
``settings.data_dir`` so jobs and objects survive a restart (with the key of stored connections,
``connection.key``, when it runs them and ``COLORIZE_CONNECTION_KEY`` is unset), and launches the API (gunicorn)
and workers (celery) as child processes that read the effective settings from their
environment. ``python -m cli.local_stack`` runs it all in the foreground until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import IO, NoReturn, Self

from cryptography.fernet import Fernet

from api.serving import gunicorn_args
from cli.embedded_services import POLL_S, RedisServer, SeaweedS3Server, stop_process
from shared.errors import ServiceUnavailable
from shared.settings import ENV_ALIASES, PROJECT_ROOT, Settings
from shared.tenancy.api_keys import AUTH_KEYS, auth_policy

CONNECTION_KEY_FILE = "connection.key"


def child_environment(settings: Settings, inherited: Mapping[str, str]) -> dict[str, str]:
    """The environment of an API or worker process: ``inherited`` with every settings variable
    replaced by those of ``settings``, so a stale variable of the calling shell cannot leak in."""
    settings_names = {name for names in ENV_ALIASES.values() for name in names}
    env = {k: v for k, v in inherited.items() if not k.startswith("COLORIZE_") and k not in settings_names}
    env.update(settings.to_env())
    # The project's packages import without an installed distribution too.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), inherited.get("PYTHONPATH")]))
    return env


def spawn_child(settings: Settings, command: Sequence[str], log: IO[bytes] | None) -> subprocess.Popen[bytes]:
    """``command`` run from the project root with ``settings`` in its environment, its output to
    ``log`` (or to ours), in a session of its own."""
    return subprocess.Popen(
        command,
        cwd=PROJECT_ROOT,
        env=child_environment(settings, os.environ),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT if log is not None else None,
        # Own session: a terminal's Ctrl-C reaches only us, so children stop before the services.
        start_new_session=True,
    )


def celery_worker_command(
    queues: str,
    name: str,
    concurrency: int,
    pool: str | None = None,
    isolated: bool = False,
    modules: Sequence[str] = (),
) -> list[str]:
    """``celery worker`` of this project on ``queues`` (comma-separated), named ``name@<host>``,
    with ``concurrency`` pool processes (or threads) of ``pool`` (celery's default: prefork).

    ``isolated``: without gossip and mingle, so the worker exchanges nothing with the others at
    start or while it runs. ``modules``: imported too (``--include``).
    """
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.celery_app",
        "worker",
        "--loglevel=INFO",
        "-Q",
        queues,
        "--hostname",
        f"{name}@%h",
        "--concurrency",
        str(concurrency),
    ]
    if pool is not None:
        command += ["--pool", pool]
    if isolated:
        command += ["--without-gossip", "--without-mingle"]
    for module in modules:
        command += ["--include", module]
    return command


def local_connection_key(data_dir: Path) -> str:
    """The key of stored connections' credentials on this machine: made once, kept in
    ``data_dir/connection.key`` (readable by its owner only), so a restart can still read them."""
    path = data_dir / CONNECTION_KEY_FILE
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key().decode("ascii")
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(key + "\n")
    return key


class LocalStack:
    """The services ``settings`` do not point at, plus API and worker processes on top of them."""

    def __init__(self, settings: Settings) -> None:
        self._base = settings
        self._effective: Settings | None = None
        self.redis: RedisServer | None = None
        self.s3: SeaweedS3Server | None = None
        self._children: list[tuple[str, subprocess.Popen[bytes], IO[bytes] | None]] = []

    @property
    def settings(self) -> Settings:
        """The settings with the URLs of the started services filled in."""
        if self._effective is None:
            raise RuntimeError("LocalStack.start() has not been called")
        return self._effective

    @property
    def api_url(self) -> str:
        return f"http://{self.settings.api_host}:{self.settings.api_port}"

    def start(self) -> Self:
        settings = self._base
        data_dir = Path(settings.data_dir)
        try:
            if settings.redis_url is None:
                self.redis = RedisServer(data_dir / "redis").start()
                settings = settings.with_overrides(redis_url=self.redis.url)
            if settings.s3_endpoint_url is None:
                self.s3 = SeaweedS3Server(
                    data_dir / "seaweedfs",
                    access_key=settings.aws_access_key_id,
                    secret_key=settings.aws_secret_access_key,
                    bucket=settings.s3_bucket,
                ).start()
                settings = settings.with_overrides(s3_endpoint_url=self.s3.endpoint_url)
        except BaseException:
            self.stop()
            raise
        if settings.connection_key is None and (self.redis is not None or self.s3 is not None):
            # Embedded mode: the key lives beside the data it protects.
            settings = settings.with_overrides(connection_key=local_connection_key(data_dir))
        self._effective = settings
        return self

    def _spawn(self, label: str, command: list[str], log_path: Path | None) -> subprocess.Popen[bytes]:
        log = log_path.open("ab") if log_path is not None else None
        process = spawn_child(self.settings, command, log)
        self._children.append((label, process, log))
        return process

    def start_api(
        self, workers: int = 2, log_path: Path | None = None, timeout_s: float = 60.0
    ) -> subprocess.Popen[bytes]:
        """gunicorn serving the API (``api/serving.py``) on settings.api_host:api_port; returns once it listens."""
        settings = self.settings
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            *gunicorn_args(f"{settings.api_host}:{settings.api_port}", workers),
        ]
        process = self._spawn("api", command, log_path)
        deadline = time.monotonic() + timeout_s
        while not _accepts_connections(settings.api_host, settings.api_port):
            if process.poll() is not None:
                raise ServiceUnavailable(f"the API exited with status {process.returncode}")
            if time.monotonic() > deadline:
                raise ServiceUnavailable(f"the API did not listen on {self.api_url} within {timeout_s:.0f} s")
            time.sleep(POLL_S)
        return process

    def start_workers(
        self, count: int = 1, concurrency: int | None = None, log_dir: Path | None = None
    ) -> list[subprocess.Popen[bytes]]:
        """``count`` celery workers on the colorize queue, each with ``concurrency`` pool processes."""
        concurrency = concurrency or self.settings.worker_processes
        started = []
        first = sum(1 for label, _, _ in self._children if label.startswith("worker"))
        for n in range(first, first + count):
            command = celery_worker_command("colorize", f"worker{n}", concurrency)
            log_path = log_dir / f"worker{n}.log" if log_dir is not None else None
            started.append(self._spawn(f"worker{n}", command, log_path))
        return started

    def start_webhook_worker(self, threads: int = 8, log_dir: Path | None = None) -> subprocess.Popen[bytes]:
        """One celery worker for webhook deliveries: threads, since deliveries only wait on the
        network, and apart from the colorize workers so a slow receiver never delays a chunk."""
        command = celery_worker_command("webhooks", "webhooks", threads, pool="threads")
        log_path = log_dir / "webhooks.log" if log_dir is not None else None
        return self._spawn("webhooks", command, log_path)

    def wait(self, poll_s: float = 0.5) -> int:
        """Block until a child process or an embedded service exits; return 1 (it should not)."""
        while True:
            for label, process, _ in self._children:
                if process.poll() is not None:
                    print(f"{label} exited with status {process.returncode}", file=sys.stderr)
                    return 1
            for service in (self.redis, self.s3):
                if service is not None and not service.running:
                    print(f"{service.name} stopped; see {service.log_path}", file=sys.stderr)
                    return 1
            time.sleep(poll_s)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the API and the workers (warm shutdown: tasks in hand finish), then Redis and
        SeaweedFS, which those need until they are gone."""
        # All at once: each stops on its own time, the slowest sets the pace.
        for _, process, _ in self._children:
            if process.poll() is None:
                process.terminate()
        for _, process, log in self._children:
            stop_process(process, timeout_s)
            if log is not None:
                log.close()
        self._children.clear()
        if self.s3 is not None:
            self.s3.stop()
            self.s3 = None
        if self.redis is not None:
            self.redis.stop()
            self.redis = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _accepts_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@contextmanager
def _interrupt_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM both stop the stack, even where a shell started us with SIGINT ignored."""

    def interrupt(signum: int, frame: FrameType | None) -> NoReturn:
        raise KeyboardInterrupt

    previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def serve(settings: Settings, workers: int = 1, concurrency: int | None = None, api_workers: int = 2) -> int:
    """Run the whole service in the foreground until Ctrl-C or SIGTERM; return the exit status."""
    try:
        access = auth_policy(settings)  # the API would refuse to start; say why before starting anything
    except ValueError as exc:
        print(f"colorize: {exc}", file=sys.stderr)
        return 2
    stack = LocalStack(settings)
    status = 0
    with _interrupt_on_signals():
        try:
            stack.start()
            effective = stack.settings
            print(f"redis:  {effective.redis_url}", flush=True)
            print(f"s3:     {effective.s3_endpoint_url} (bucket {effective.s3_bucket})", flush=True)
            stack.start_workers(workers, concurrency)
            stack.start_webhook_worker()
            stack.start_api(workers=api_workers)
            print(f"Colorize API at {stack.api_url}  (Ctrl-C stops)", flush=True)
            print(access.summary, flush=True)
            if access.mode == AUTH_KEYS:
                print(f"create a key: REDIS_URL={effective.redis_url} colorize keys create --tenant NAME", flush=True)
            status = stack.wait()
        except KeyboardInterrupt:
            pass
        finally:
            # A second Ctrl-C must not cut the shutdown short and orphan the services.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            print("stopping...", file=sys.stderr, flush=True)
            stack.stop()
    return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cli.local_stack",
        description="Run the API, workers and (unless configured) embedded Redis and SeaweedFS.",
    )
    parser.add_argument("--workers", type=int, default=1, help="celery worker processes to start")
    parser.add_argument("--concurrency", type=int, default=None, help="pool processes per worker")
    parser.add_argument("--api-workers", type=int, default=2, help="gunicorn worker processes")
    args = parser.parse_args(argv)
    return serve(
        Settings.from_env_or_exit(), workers=args.workers, concurrency=args.concurrency, api_workers=args.api_workers
    )


if __name__ == "__main__":
    sys.exit(main())
