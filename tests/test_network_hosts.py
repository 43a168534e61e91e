"""The service across machines: API, two workers, Redis and the S3 store each on a host of its own.

Each part runs in a network namespace of this test's making (``ip netns``), joined to the
others by veth pairs on one bridge, with addresses from the benchmarking range (RFC 2544) that
exist nowhere but here; the test itself is one more host on that bridge. No part can reach
another on loopback (each namespace has a loopback of its own), and no two share a directory:
each gets its own data directory, temporary directory and copy of the model files. Midway
through a job one worker is cut off from Redis (a blackhole route on its host) for 30 s; the job
still ends with every item done exactly once.

Needs root and iproute2; skips with the reason elsewhere.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from api.serving import gunicorn_args
from bench.job_audit import audit_job
from bench.jpeg_archive import small_jpegs, zip_archive
from bench.patient_client import PatientClient
from cli.embedded_services import RedisServer, SeaweedS3Server
from cli.local_stack import celery_worker_command, child_environment
from shared.jobs.store import JobStore
from shared.jobs.upkeep import WORKER_STALE_AFTER_S, WorkerHeartbeats
from shared.settings import PROJECT_ROOT, Settings
from tests.fault_marks import HOLD_S, chunks_key
from tests.integration_fixtures import TEST_MODEL

pytestmark = pytest.mark.integration

HOSTS = {"client": 1, "redis": 10, "s3": 11, "api": 12, "w1": 21, "w2": 22}
CUT_S = 30
IMAGES = 60
SIDE = 24
START_TIMEOUT_S = 90


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def _unavailable() -> str | None:
    if sys.platform != "linux" or os.geteuid() != 0:
        return "needs root on Linux (network namespaces)"
    if shutil.which("ip") is None:
        return "needs iproute2's ip"
    probe = f"cz-probe-{uuid.uuid4().hex[:6]}"
    made = _run("ip", "netns", "add", probe)
    if made.returncode != 0:
        return f"cannot make network namespaces here: {made.stderr.strip()}"
    _run("ip", "netns", "delete", probe)
    return None


class HostNetwork:
    """Hosts in network namespaces on one bridge (in a namespace of its own); the test's own
    process is host ``client``, through a veth pair whose end stays in its namespace."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:6]
        # One /24 of 198.18.0.0/15 per run, so that runs side by side do not meet.
        self.subnet = f"198.{18 + random.randrange(2)}.{random.randrange(256)}"
        self.lan = f"cz{self.tag}-lan"
        self.client_link = f"cz{self.tag}-cl"
        self.made: list[str] = []

    def address(self, host: str) -> str:
        return f"{self.subnet}.{HOSTS[host]}"

    def namespace(self, host: str) -> str:
        return f"cz{self.tag}-{host}"

    def wrap(self, host: str) -> list[str]:
        """The command line that runs a program on ``host``."""
        return ["ip", "netns", "exec", self.namespace(host)]

    def _ip(self, *argv: str) -> None:
        done = _run("ip", *argv)
        if done.returncode != 0:
            raise RuntimeError(f"ip {' '.join(argv)}: {done.stderr.strip()}")

    def build(self) -> HostNetwork:
        self._ip("netns", "add", self.lan)
        self.made.append(self.lan)
        self._ip("-n", self.lan, "link", "add", "br0", "type", "bridge")
        self._ip("-n", self.lan, "link", "set", "br0", "up")
        for host, number in HOSTS.items():
            inside, port = f"cz{self.tag}{number}", f"cz{self.tag}{number}p"
            self._ip("link", "add", inside, "type", "veth", "peer", "name", port)
            self._ip("link", "set", port, "netns", self.lan)
            self._ip("-n", self.lan, "link", "set", port, "master", "br0", "up")
            if host == "client":
                self._ip("link", "set", inside, "name", self.client_link)
                self._ip("addr", "add", f"{self.address(host)}/24", "dev", self.client_link)
                self._ip("link", "set", self.client_link, "up")
                continue
            namespace = self.namespace(host)
            self._ip("netns", "add", namespace)
            self.made.append(namespace)
            self._ip("link", "set", inside, "netns", namespace)
            self._ip("-n", namespace, "link", "set", inside, "name", "eth0")
            self._ip("-n", namespace, "addr", "add", f"{self.address(host)}/24", "dev", "eth0")
            self._ip("-n", namespace, "link", "set", "eth0", "up")
            self._ip("-n", namespace, "link", "set", "lo", "up")
        return self

    def cut(self, host: str, target: str) -> None:
        """Packets from ``host`` to ``target`` go nowhere (as if a link between them failed)."""
        self._ip("-n", self.namespace(host), "route", "add", "blackhole", f"{self.address(target)}/32")

    def mend(self, host: str, target: str) -> None:
        self._ip("-n", self.namespace(host), "route", "del", "blackhole", f"{self.address(target)}/32")

    def listening(self, host: str) -> str:
        return _run("ip", "netns", "exec", self.namespace(host), "ss", "-ltnH").stdout

    def close(self) -> None:
        _run("ip", "link", "delete", self.client_link)
        for namespace in reversed(self.made):
            _run("ip", "netns", "delete", namespace)


@dataclass
class HostProcess:
    host: str
    process: subprocess.Popen
    home: Path

    @property
    def log(self) -> str:
        return (self.home / "log").read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)


def own_directory(root: Path, host: str, models_dir: Path) -> tuple[Path, dict[str, str]]:
    """A directory of the host's own with its copy of the model files; its environment's paths."""
    home = root / host
    (home / "tmp").mkdir(parents=True)
    shutil.copytree(models_dir, home / "models")
    return home, {"HOME": str(home), "TMPDIR": str(home / "tmp")}


def spawn(
    network: HostNetwork, host: str, argv: list[str], settings: Settings, home: Path, env: dict[str, str]
) -> HostProcess:
    environment = child_environment(settings, os.environ) | env | {"PYTHONPATH": str(PROJECT_ROOT)}
    log = (home / "log").open("wb")
    process = subprocess.Popen(
        [*network.wrap(host), *argv],
        cwd=home,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    return HostProcess(host, process, home)


def wait_for(what: str, ready, timeout_s: float, processes: list[HostProcess]) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        for p in processes:
            if p.process.poll() is not None:
                raise RuntimeError(f"{p.host} exited:\n{p.log[-3000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"not {what} within {timeout_s:.0f} s:\n" + "\n".join(p.log[-1500:] for p in processes))
        time.sleep(0.2)


@pytest.fixture
def network() -> Iterator[HostNetwork]:
    reason = _unavailable()
    if reason:
        pytest.skip(reason)
    net = HostNetwork()
    try:
        yield net.build()
    finally:
        net.close()


def test_hosts_apart_and_a_worker_cut_off_from_redis_for_30_s_mid_job(
    network: HostNetwork, tmp_path: Path, test_models_dir: Path
) -> None:
    redis_server = RedisServer(tmp_path / "redis", host=network.address("redis"), wrap=network.wrap("redis"))
    s3_server = SeaweedS3Server(
        tmp_path / "s3", host=network.address("s3"), wrap=network.wrap("s3"), bucket="colorize-hosts"
    )
    processes: list[HostProcess] = []
    try:
        redis_server.start()
        s3_server.start()
        api_port = 8000
        base = Settings(
            redis_url=redis_server.url,
            s3_endpoint_url=s3_server.endpoint_url,
            s3_bucket="colorize-hosts",
            model=TEST_MODEL,
            device="cpu",
            engine_threads=1,
            worker_concurrency=1,
            batch_size=2,
            chunk_size=2,
            task_soft_time_limit_s=5,
            task_time_limit_s=6,
            visibility_timeout_s=8,
            item_max_attempts=6,
            api_host=network.address("api"),
            api_port=api_port,
            auth="open",
            auth_allow_open_public=True,
        )
        urls = (base.redis_url, base.s3_endpoint_url)
        assert not any("127.0.0.1" in url or "localhost" in url for url in urls), urls

        def start(host: str, argv: list[str]) -> HostProcess:
            home, env = own_directory(tmp_path, host, test_models_dir)
            settings = base.with_overrides(data_dir=home / "data", models_dir=home / "models")
            processes.append(spawn(network, host, argv, settings, home, env))
            return processes[-1]

        start("api", [sys.executable, "-m", "gunicorn", *gunicorn_args(f"{network.address('api')}:{api_port}", 1)])
        workers = {
            host: start(
                host, celery_worker_command("colorize", host, 1, isolated=True, modules=["tests.worker_faults"])
            )
            for host in ("w1", "w2")
        }
        state = redis.Redis.from_url(base.redis_url, socket_timeout=10)
        heartbeats = WorkerHeartbeats(state, namespace=base.redis_namespace)
        wait_for(
            "both workers heartbeating",
            lambda: len(heartbeats.live(WORKER_STALE_AFTER_S)) == 2,
            START_TIMEOUT_S,
            processes,
        )
        client = PatientClient(f"http://{network.address('api')}:{api_port}", give_up_s=START_TIMEOUT_S)
        assert client.json("GET", "/healthz")[0] == 200

        # Nothing listens on any host but its own service, and each service only on its address.
        assert f"{network.address('redis')}:{redis_server.port}" in network.listening("redis")
        assert f"{network.address('api')}:{api_port}" in network.listening("api")
        for host in ("api", "w1", "w2"):
            assert str(redis_server.port) not in network.listening(host), host
            assert f":{s3_server.port} " not in network.listening(host), host

        names = [f"frames/{i:03d}.jpg" for i in range(IMAGES)]
        job_id = client.submit("frames.zip", zip_archive(zip(names, small_jpegs(IMAGES, SIDE, seed=3))))["id"]

        # Cut w1 off while it holds a chunk of the job, early enough that much work remains.
        w1_pid = workers["w1"].process.pid
        jobs = JobStore(state, base)
        held = None
        deadline = time.monotonic() + 60
        while held is None:
            assert time.monotonic() < deadline, "w1 never held a chunk of the job"
            popped = state.blpop([chunks_key(base)], timeout=1)
            if popped:
                record = json.loads(popped[1])
                fresh = time.time() - record["at"] < HOLD_S / 2  # it lingers HOLD_S before recording
                if record["job"] == job_id and record["worker_pid"] in _pids_of(w1_pid) and fresh:
                    held = record
        done_at_cut = sum(1 for v in state.hvals(jobs.keys.job(job_id).statuses) if v == b"done")
        assert done_at_cut < IMAGES // 2, "the job was nearly over before the cut"
        network.cut("w1", "redis")
        time.sleep(CUT_S)
        network.mend("w1", "redis")

        job = client.wait_for_end(job_id, 120)
        audit = audit_job(base, job_id, IMAGES, (SIDE, SIDE), tenant="local")
        assert audit.ok, audit.problems
        assert (job["status"], job["counts"]["done"], job["counts"]["failed"]) == ("succeeded", IMAGES, 0)
        assert audit.result_objects == IMAGES
        # What w1 held when it was cut off was begun again elsewhere (after the visibility
        # timeout), and counted once all the same.
        assert all(a >= 2 for a in jobs.attempts(job_id, held["indices"])), jobs.attempts(job_id, held["indices"])
        # w1 met the cut, came back rather than dying, and heartbeats again.
        log = workers["w1"].log
        assert "ConnectionError" in log and f"{network.address('redis')}:{redis_server.port}" in log
        assert workers["w1"].process.poll() is None, log[-3000:]
        wait_for("w1 heartbeating again", lambda: len(heartbeats.live(WORKER_STALE_AFTER_S)) == 2, 60, processes)
        state.close()
    finally:
        for process in processes:
            process.stop()
        s3_server.stop(timeout_s=5)
        redis_server.stop()


def _pids_of(root_pid: int) -> set[int]:
    """``root_pid`` and its descendants (a worker's pool processes announce chunks under their own pid)."""
    pids, frontier = {root_pid}, [root_pid]
    while frontier:
        pid = frontier.pop()
        children = Path(f"/proc/{pid}/task/{pid}/children")
        try:
            found = {int(c) for c in children.read_text().split()}
        except OSError:
            found = set()
        frontier += list(found - pids)
        pids |= found
    return pids
