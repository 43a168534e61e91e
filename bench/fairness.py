"""Fairness benchmark: single images of one tenant while another tenant's archives run.

    python bench/fairness.py [--images 1000] [--side 512] [--gap 0.25]   (needs the test extra)

Starts the local stack (embedded Redis and SeaweedFS, the API, one Celery worker with one
process per core) with API keys for two tenants, and prints:

1. single-image latency (submit to finished, polled every 20 ms) with nothing else running;
2. tenant "bulk" alone: two archives of ``--images`` images, and their throughput;
3. the same two archives while tenant "interactive" submits single images one after
   another (``--gap`` seconds apart): the singles' latency p50 / p99, and the bulk
   throughput with them, against (2).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.api_calls import request, submit_bytes, wait_for
from bench.service import jpeg_variants, percentile, sample_photos, zip_bytes
from cli.embedded_services import free_port
from cli.local_stack import LocalStack
from shared.settings import Settings
from shared.tenancy.api_keys import KeyStore

POLL_S = 0.02


def single_latency(api: str, image: bytes, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    job = wait_for(api, submit_bytes(api, "single.jpg", image, headers), poll_s=POLL_S, headers=headers)
    assert job["status"] == "succeeded", job
    return time.perf_counter() - started


def run_archives(api: str, archive: bytes, headers: dict[str, str]) -> list[str]:
    return [submit_bytes(api, f"bulk{n}.zip", archive, headers) for n in range(2)]


def finished(api: str, job_ids: list[str], headers: dict[str, str]) -> bool:
    return all(
        request("GET", f"{api}/v1/jobs/{job_id}", headers=headers)["status"]
        in ("succeeded", "partially_succeeded", "failed", "canceled")
        for job_id in job_ids
    )


def describe(latencies: list[float]) -> str:
    return (
        f"p50 {statistics.median(latencies) * 1000:.0f} ms, p99 {percentile(latencies, 0.99) * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms ({len(latencies)} images)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000, help="images in each of the two archives")
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--gap", type=float, default=0.25, help="seconds between two single images")
    parser.add_argument("--alone-samples", type=int, default=10)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        base = Settings.from_env().with_overrides(
            data_dir=tmp / "data", api_port=free_port(), redis_url=None, s3_endpoint_url=None, auth="keys"
        )
        with LocalStack(base) as stack:
            settings = stack.settings
            assert settings.redis_url is not None  # the stack's Redis, embedded or configured
            keys = KeyStore(redis.Redis.from_url(settings.redis_url))
            bulk = {"Authorization": f"Bearer {keys.create('bulk').token}"}
            interactive = {"Authorization": f"Bearer {keys.create('interactive').token}"}
            stack.start_api(log_path=tmp / "api.log")
            stack.start_workers(1, log_dir=tmp)
            api = stack.api_url
            print(
                f"{os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f}), batch {settings.batch_size}, "
                f"chunk {settings.chunk_size}, {settings.worker_processes} worker processes; two archives of "
                f"{args.images} images of {args.side}x{args.side}\n",
                flush=True,
            )

            photos = sample_photos()
            archive = zip_bytes(jpeg_variants(photos, args.images, args.side))
            single = jpeg_variants(photos, 1, args.side, seed=1)[0]
            wait_for(
                api, submit_bytes(api, "warm.zip", zip_bytes(jpeg_variants(photos, 32, args.side)), bulk), headers=bulk
            )

            alone = [single_latency(api, single, interactive) for _ in range(args.alone_samples)]
            print(f"single image, nothing else running: {describe(alone)}", flush=True)

            started = time.perf_counter()
            for job_id in run_archives(api, archive, bulk):
                wait_for(api, job_id, poll_s=0.5, headers=bulk)
            alone_rate = 2 * args.images / (time.perf_counter() - started)
            print(f"bulk alone: {alone_rate:.1f} images/s", flush=True)

            started = time.perf_counter()
            jobs = run_archives(api, archive, bulk)
            latencies = []
            while not finished(api, jobs, bulk):
                latencies.append(single_latency(api, single, interactive))
                time.sleep(args.gap)
            shared_rate = 2 * args.images / (time.perf_counter() - started)
            print(f"single images while the archives run: {describe(latencies)}")
            print(
                f"bulk with them: {shared_rate:.1f} images/s ({shared_rate / alone_rate - 1:+.1%} against alone; "
                f"the singles themselves: {len(latencies)} images)",
                flush=True,
            )


if __name__ == "__main__":
    main()
