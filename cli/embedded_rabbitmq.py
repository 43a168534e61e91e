"""A private RabbitMQ node on loopback ports, for the tests and the fault suite on RabbitMQ.

The node runs from the system's RabbitMQ installation (Debian's ``rabbitmq-server``) as a child
process with everything of its own under ``data_dir``: node name, AMQP and distribution ports,
Erlang cookie, message store, logs. So it can be killed and started again on the same data
(quorum queues keep what they confirmed) without touching a RabbitMQ the machine runs.
Isolation within one node is by virtual host (:meth:`RabbitMQServer.add_vhost`).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

from kombu import Connection

from cli.embedded_services import LOOPBACK, _ServiceProcess, free_port
from shared.errors import ServiceUnavailable

# Debian installs the real scripts here; /usr/sbin holds wrappers that switch to the rabbitmq user.
_SEARCH_PATH = os.pathsep.join(["/usr/lib/rabbitmq/bin", os.environ.get("PATH", "")])
_NOT_INSTALLED = "RabbitMQ is not installed (Debian: apt-get install rabbitmq-server)"


def rabbitmq_available() -> str | None:
    """Why no node can be started here, or None when one can."""
    if shutil.which("rabbitmq-server", path=_SEARCH_PATH) is None:
        return _NOT_INSTALLED
    return None


def _program(name: str) -> str:
    """The path of RabbitMQ's ``name`` script."""
    path = shutil.which(name, path=_SEARCH_PATH)
    if path is None:
        raise ServiceUnavailable(_NOT_INSTALLED)
    return path


class RabbitMQServer(_ServiceProcess):
    """``rabbitmq-server`` bound to 127.0.0.1, with user guest (which RabbitMQ admits from loopback only)."""

    name = "rabbitmq"

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        super().__init__(data_dir)
        self.port = port or free_port()
        self.dist_port = free_port()
        self.node = f"colorize-{uuid.uuid4().hex[:8]}@localhost"

    def url(self, vhost: str = "/") -> str:
        return f"amqp://guest:guest@{LOOPBACK}:{self.port}/{vhost.replace('/', '%2F')}"

    def _environment(self) -> dict[str, str]:
        (self.data_dir / "enabled_plugins").write_text("[].\n")
        return {
            **os.environ,
            "PATH": _SEARCH_PATH,
            "HOME": str(self.data_dir),  # the Erlang cookie of this node and its rabbitmqctl
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": LOOPBACK,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "RABBITMQ_MNESIA_BASE": str(self.data_dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.data_dir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.data_dir / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.data_dir / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.data_dir / "advanced.config"),
            "RABBITMQ_PID_FILE": str(self.data_dir / "rabbitmq.pid"),
        }

    def start(self, timeout_s: float = 120.0) -> RabbitMQServer:
        reason = rabbitmq_available()
        if reason:
            raise ServiceUnavailable(reason)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._launch([_program("rabbitmq-server")], env=self._environment())

        def accepts() -> None:
            with Connection(self.url(), connect_timeout=1) as connection:
                connection.connect()

        self._wait_until(accepts, timeout_s)
        return self

    def ctl(self, *args: str, timeout_s: float = 60) -> str:
        """``rabbitmqctl`` against this node."""
        done = subprocess.run(
            [_program("rabbitmqctl"), "-n", self.node, *args],
            env=self._environment(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if done.returncode != 0:
            raise ServiceUnavailable(f"rabbitmqctl {' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def add_vhost(self, vhost: str) -> str:
        """A virtual host of its own for guest; returns its URL."""
        self.ctl("add_vhost", vhost)
        self.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        return self.url(vhost)

    def delete_vhost(self, vhost: str) -> None:
        self.ctl("delete_vhost", vhost)

    def kill(self) -> None:
        """SIGKILL to the whole node (no shutdown): a machine that lost its power."""
        if self._process is not None:
            try:
                os.killpg(self._process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._terminate(timeout_s=10)

    def stop(self, timeout_s: float = 30.0) -> None:
        self._terminate(timeout_s)
