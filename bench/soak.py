"""Soak under faults: one big archive through the real stack while its parts are killed at random.

    python bench/soak.py [--images 10000] [--workers 3] [--kill-every 10] [--seed 0]
    python bench/soak.py --images 300 --kills-per-kind 1      (the small run CI does)

Starts private Redis, SeaweedFS, the API (gunicorn) and Celery workers on a temporary data
directory (:class:`bench.fault_stack.FaultStack`), submits one zip of small JPEGs, and while
the job runs injects faults one after another:

- ``worker``: SIGKILL of a whole worker (pool processes included), then a fresh one;
- ``redis``:  SIGKILL of redis-server, restarted on the same port and data directory;
- ``s3``:     SeaweedFS stopped (SIGTERM, SIGKILL after 0.5 s), started again;
- ``api``:    SIGKILL of gunicorn, started again on the same port.

When the job has ended it audits the outcome (:func:`bench.job_audit.audit_job`): exact counts,
one status per item, a result object for every done item and for no other, every result a whole
JPEG that decodes to the input's size, no stray objects. It prints the counts, the faults of
each kind, the duration and the audit; the exit status is 0 when the audit passes.

``tests/test_faults.py`` runs :func:`run_soak` small.
"""

from __future__ import annotations

import argparse
import collections
import random
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fault_stack import FaultStack
from bench.job_audit import Audit, audit_job
from bench.jpeg_archive import small_jpegs, zip_archive
from bench.patient_client import PatientClient
from shared.settings import PROJECT_ROOT, Settings

FAULT_KINDS = ("worker", "redis", "s3", "api")


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
    api = stack.start_api()
    client = PatientClient(api.url, give_up_s=300)
    archive = zip_archive(
        (f"roll{i // 1000:02d}/frame{i:05d}.jpg", data) for i, data in enumerate(small_jpegs(images, side, seed))
    )
    log(f"submitting {images} images ({len(archive) / 1e6:.1f} MB zip) to {workers} workers")
    started = time.monotonic()
    job_id = client.submit("soak.zip", archive)["id"]
    injector = FaultInjector(stack, fault_plan(kills_per_kind, kinds, rng), kinds, kill_every_s, rng, log)
    injector.start()

    def record_progress(job: dict[str, Any]) -> None:
        injector.progress = (job["counts"]["done"] + job["counts"]["failed"]) / images

    try:
        job = client.wait_for_end(job_id, timeout_s, poll_s=0.1, on_poll=record_progress)
    finally:
        injector.finish()
    seconds = time.monotonic() - started
    log(f"job {job['status']} after {seconds:.1f} s; auditing")
    audit = audit_job(stack.settings, job_id, images, expected_shape=(side, side))
    return SoakReport(images, workers, seconds, injector.faults, audit, client.outages, dict(client.statuses))


def _interrupt(signum: int, frame: FrameType | None) -> None:
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
