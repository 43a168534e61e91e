"""CPU cost of storing and reading results: the worker's client (boto3) and the store (SeaweedFS).

    python bench/storage_costs.py [--requests 300] [--sizes 100,800]

Starts the embedded SeaweedFS on a temporary directory and, through the project's ``Storage``,
PUTs ``--requests`` objects of each size (kB) and reads half of each back by range, printing
per request the CPU time of this process (the client) and of the ``weed`` process, and the
wall time. One colorized 512 x 512 JPEG is about 100 kB; 800 kB is what a batch of eight
would be as one object. Run on a quiet machine: the store's CPU is read from /proc.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.process_stats import cpu_seconds_by_program
from cli.embedded_services import SeaweedS3Server
from shared.settings import Settings
from shared.storage.object_store import Storage


def store_cpu_s() -> float:
    """CPU seconds so far of the SeaweedFS process this benchmark started."""
    return cpu_seconds_by_program()["weed"]


def measure(requests: int, call: Callable[[int], object]) -> tuple[float, float, float]:
    """Client CPU, store CPU and wall time per request, in ms."""
    store_before, client_before, wall_before = store_cpu_s(), time.process_time(), time.perf_counter()
    for number in range(requests):
        call(number)
    return (
        (time.process_time() - client_before) / requests * 1000,
        (store_cpu_s() - store_before) / requests * 1000,
        (time.perf_counter() - wall_before) / requests * 1000,
    )


def size_costs(storage: Storage, kb: int, requests: int) -> list[tuple[str, tuple[float, float, float]]]:
    """PUTs of ``kb`` kB objects, then ranged GETs of half of each."""
    data = os.urandom(kb * 1000)
    for warm in range(10):
        storage.put_bytes(f"warm/{kb}/{warm}", data)
    put = measure(requests, lambda n: storage.put_bytes(f"bench/{kb}/{n}", data, "image/jpeg"))
    get = measure(requests, lambda n: storage.get_range(f"bench/{kb}/{n}", 0, len(data) // 2))
    return [(f"PUT {kb} kB", put), (f"GET {kb // 2} kB range", get)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--sizes", default="100,800", help="object sizes in kB, comma-separated")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="colorize-bench-") as tmp:
        server = SeaweedS3Server(Path(tmp))
        server.start()
        try:
            settings = Settings.from_env(
                {
                    "S3_ENDPOINT_URL": server.endpoint_url,
                    "AWS_ACCESS_KEY_ID": server.access_key,
                    "AWS_SECRET_ACCESS_KEY": server.secret_key,
                    "COLORIZE_S3_BUCKET": server.bucket,
                }
            )
            storage = Storage(settings)
            print(f"{'request':>22} {'client CPU ms':>14} {'store CPU ms':>13} {'wall ms':>8}")
            for kb in (int(size) for size in args.sizes.split(",")):
                for label, (client, server_cpu, wall) in size_costs(storage, kb, args.requests):
                    print(f"{label:>22} {client:14.2f} {server_cpu:13.2f} {wall:8.2f}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
