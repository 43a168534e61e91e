"""Slow clients against the API: does ``/healthz`` keep answering while connections hang half-sent?

    python bench/slow_clients.py [--connections 200] [--seconds 15] [--workers 2]

For each configuration of gunicorn it starts the API on a free loopback port (Redis and storage
are not needed for ``/healthz``; their URLs point nowhere), then opens ``--connections``
connections that each send half a request line and stop, reopening any the server closes, as
an attacker would. Meanwhile it asks for ``/healthz`` on a fresh connection every 0.1 s, each
with a 2 s limit, and prints the latency (p50, p99, max) and the failures side by side:

- ``gthread``: the threaded worker the API ran under before (2 processes x 8 threads);
- ``api.serving``: the configuration the API runs under now (``api/serving.py``).

Only loopback addresses are used; every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self, cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.serving import gunicorn_args
from cli.embedded_services import LOOPBACK, free_port, stop_process
from cli.local_stack import child_environment
from shared.settings import PROJECT_ROOT, Settings

HALF_REQUEST = b"GET /healthz HT"
PROBE_INTERVAL_S = 0.1
PROBE_TIMEOUT_S = 2.0
START_TIMEOUT_S = 60.0


def old_args(bind: str, workers: int) -> list[str]:
    """The API's gunicorn command line before ``api/serving.py``."""
    return [
        "--bind",
        bind,
        "--worker-class",
        "gthread",
        "--workers",
        str(workers),
        "--threads",
        "8",
        "--graceful-timeout",
        "20",
        "api.app:create_app()",
    ]


CONFIGURATIONS = {"gthread": old_args, "api.serving": gunicorn_args}


@dataclass
class Outcome:
    latencies_s: list[float] = field(default_factory=list)
    failures: int = 0
    reconnects: int = 0
    held: int = 0  # attack connections open at the end

    def row(self, name: str) -> str:
        if self.latencies_s:
            ordered = sorted(self.latencies_s)
            p50 = statistics.median(ordered) * 1000
            p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
            worst = ordered[-1] * 1000
            figures = f"{p50:8.1f} {p99:8.1f} {worst:8.1f}"
        else:
            figures = f"{'-':>8} {'-':>8} {'-':>8}"
        total = len(self.latencies_s) + self.failures
        return f"{name:<12} {figures} {self.failures:>5}/{total:<5} {self.reconnects:>10} {self.held:>5}"


def probe(port: int) -> float | None:
    """Seconds until a complete 200 answer to GET /healthz; None when it failed or took too long."""
    started = time.perf_counter()
    try:
        with socket.create_connection((LOOPBACK, port), timeout=PROBE_TIMEOUT_S) as sock:
            sock.settimeout(max(0.01, PROBE_TIMEOUT_S - (time.perf_counter() - started)))
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    except OSError:
        return None
    elapsed = time.perf_counter() - started
    return elapsed if answer.startswith(b"HTTP/1.1 200") and elapsed <= PROBE_TIMEOUT_S else None


class Attack:
    """``count`` connections that each sent half a request line; closed ones are reopened."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self.reconnects = 0
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._hold, daemon=True)

    def __enter__(self) -> Self:
        for _ in range(self.count):
            self._open()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for key in list(self._selector.get_map().values()):
            _registered_socket(key).close()
        self._selector.close()

    @property
    def held(self) -> int:
        return len(self._selector.get_map())

    def _open(self) -> None:
        try:
            sock = socket.create_connection((LOOPBACK, self.port), timeout=1.0)
            sock.sendall(HALF_REQUEST)
            sock.setblocking(False)
        except OSError:
            return  # the server is not accepting: the next round tries again
        self._selector.register(sock, selectors.EVENT_READ)

    def _hold(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.2):
                sock = _registered_socket(key)
                try:
                    if sock.recv(4096):
                        continue  # an answer (an error page): the server closes next
                except BlockingIOError:
                    continue
                except OSError:
                    pass
                self._selector.unregister(sock)
                sock.close()
            while self.held < self.count and not self._stop.is_set():
                self.reconnects += 1
                before = self.held
                self._open()
                if self.held == before:
                    break


def _registered_socket(key: selectors.SelectorKey) -> socket.socket:
    return cast(socket.socket, key.fileobj)  # Attack registers nothing but its sockets


def run(name: str, args: list[str], env: dict[str, str], connections: int, seconds: float, log: Path) -> Outcome:
    port = int(args[args.index("--bind") + 1].rsplit(":", 1)[1])
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", *args],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while probe(port) is None:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name}: the API did not start; see {log}")
                time.sleep(0.2)
            outcome = Outcome()
            with Attack(port, connections) as attack:
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    started = time.monotonic()
                    latency = probe(port)
                    if latency is None:
                        outcome.failures += 1
                    else:
                        outcome.latencies_s.append(latency)
                    time.sleep(max(0.0, PROBE_INTERVAL_S - (time.monotonic() - started)))
                outcome.reconnects, outcome.held = attack.reconnects, attack.held
            return outcome
        finally:
            stop_process(process, 10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=200, help="half-sent connections held open")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each attack")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (as ./scripts/serve)")
    parser.add_argument("--only", choices=sorted(CONFIGURATIONS), action="append", help="run only these")
    args = parser.parse_args(argv)
    settings = Settings(redis_url="redis://127.0.0.1:9/0", s3_endpoint_url="http://127.0.0.1:9", api_host=LOOPBACK)
    env = child_environment(settings, os.environ)
    rows = []
    with tempfile.TemporaryDirectory(prefix="colorize-slow-clients-") as tmp:
        for name in args.only or CONFIGURATIONS:
            bind = f"{LOOPBACK}:{free_port()}"
            outcome = run(
                name,
                CONFIGURATIONS[name](bind, args.workers),
                env,
                args.connections,
                args.seconds,
                Path(tmp) / f"{name}.log",
            )
            rows.append(outcome.row(name))
            print(f"{name}: done", file=sys.stderr, flush=True)
    print(
        f"{args.connections} half-sent connections, /healthz every {PROBE_INTERVAL_S} s for {args.seconds:g} s "
        f"({args.workers} worker processes); failure: no 200 within {PROBE_TIMEOUT_S:g} s"
    )
    print(f"{'config':<12} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'failed':>11} {'reconnects':>10} {'held':>5}")
    for row in rows:
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
