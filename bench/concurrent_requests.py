"""Many requests at once against one API process: does each get an answer, none a 5xx?

    python bench/concurrent_requests.py [--requests 200] [--rounds 3] [--wait-s 5]

It starts a private Redis and SeaweedFS and the API under gunicorn as deployed (``api/serving.py``,
one gevent worker process, API keys required), creates a key, and sends ``--requests`` requests
at the same moment (one connection each, released together), in two kinds:

- ``GET /v1/jobs/{id}``, ``--rounds`` times: each costs a few Redis commands (the key, the rate
  limit, the job);
- ``POST /v1/jobs`` of a small PNG with ``Prefer: wait=N``, once: no worker runs, so each request
  holds its connection for the whole wait, polling Redis.

It prints, per kind, the answers by status (2xx, 4xx, 5xx, and the 503s that carried
Retry-After) and the latency (p50, max). The exit status is 1 when any answer was a 5xx or
none came. Only loopback addresses are used; every wait is bounded.
"""

from __future__ import annotations

import argparse
import collections
import io
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import urllib3
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fault_stack import FaultStack
from shared.setting_types import Quotas
from shared.settings import Settings
from shared.tenancy.api_keys import KeyStore

TENANT = "bench-concurrency"
REQUEST_TIMEOUT_S = 120.0


@dataclass
class Tally:
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    retry_after: int = 0  # 503s that said when to come back
    failures: list[str] = field(default_factory=list)  # no answer at all
    latencies_s: list[float] = field(default_factory=list)

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    def row(self, name: str) -> str:
        ok = sum(n for status, n in self.statuses.items() if status < 400)
        client = sum(n for status, n in self.statuses.items() if 400 <= status < 500)
        ordered = sorted(self.latencies_s) or [0.0]
        return (
            f"{name:<34} {ok:>5} {client:>5} {self.server_errors:>5} {self.retry_after:>9} {len(self.failures):>8}"
            f" {statistics.median(ordered) * 1000:>9.0f} {ordered[-1] * 1000:>9.0f}"
        )


HEADER = f"{'requests at once':<34} {'2xx':>5} {'4xx':>5} {'5xx':>5} {'503+R-A':>9} {'no reply':>8} {'p50 ms':>9} {'max ms':>9}"


def all_at_once(count: int, send: Callable[[urllib3.HTTPConnectionPool], urllib3.BaseHTTPResponse], url: str) -> Tally:
    """``count`` requests, each on a connection of its own, released together."""
    tally, lock = Tally(), threading.Lock()
    start = threading.Barrier(count)

    def one() -> None:
        pool = urllib3.connectionpool.connection_from_url(url, maxsize=1, retries=False, timeout=REQUEST_TIMEOUT_S)
        try:
            start.wait(timeout=60)
            began = time.monotonic()
            response = send(pool)
            took = time.monotonic() - began
            with lock:
                tally.statuses[response.status] += 1
                tally.retry_after += response.status == 503 and "Retry-After" in response.headers
                tally.latencies_s.append(took)
        except Exception as exc:  # noqa: BLE001  # any failure to get an answer is counted, not raised
            with lock:
                tally.failures.append(repr(exc)[:200])
        finally:
            pool.close()

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(REQUEST_TIMEOUT_S + 60)
    return tally


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (16, 16), 128).save(buffer, format="PNG")
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="requests sent at once (default 200)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of GETs (default 3)")
    parser.add_argument("--wait-s", type=int, default=5, help="the Prefer: wait of each POST (default 5)")
    args = parser.parse_args(argv)

    # Keys required; no rate limit or job quota stands between the requests and Redis.
    base = Settings(auth="keys", quotas=replace(Quotas(), request_burst=10**6, max_jobs_in_flight=0))
    with tempfile.TemporaryDirectory(prefix="concurrent-requests-") as tmp, FaultStack(Path(tmp), base) as stack:
        api = stack.start_api()
        token = KeyStore(stack.redis_client(), namespace=stack.settings.redis_namespace).create(TENANT).token
        auth = {"Authorization": f"Bearer {token}"}
        image = png()

        def create(pool: urllib3.HTTPConnectionPool, wait: str = "") -> urllib3.BaseHTTPResponse:
            headers = {**auth, "Prefer": wait} if wait else auth
            return pool.request("POST", "/v1/jobs", fields={"file": ("grey.png", image, "image/png")}, headers=headers)

        job = create(urllib3.connectionpool.connection_from_url(api.url, retries=False)).json()
        print(f"API under gunicorn (one gevent process, keys required) on {api.url}; job {job['id']} queued\n")
        print(HEADER)
        tallies: list[tuple[str, Tally]] = []
        for round_number in range(args.rounds):
            read = all_at_once(
                args.requests, lambda pool: pool.request("GET", f"/v1/jobs/{job['id']}", headers=auth), api.url
            )
            tallies.append((f"GET /v1/jobs/{{id}} (round {round_number + 1})", read))
            print(read.row(tallies[-1][0]), flush=True)
        waited = all_at_once(args.requests, lambda pool: create(pool, f"wait={args.wait_s}"), api.url)
        tallies.append((f"POST /v1/jobs, Prefer: wait={args.wait_s}", waited))
        print(waited.row(tallies[-1][0]), flush=True)
        for name, tally in tallies:
            for failure in sorted(set(tally.failures))[:3]:
                print(f"  no reply ({name}): {failure}")
        failed = any(tally.server_errors or tally.failures for _, tally in tallies)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
