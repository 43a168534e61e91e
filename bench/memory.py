"""Peak memory of a worker process on the largest legal images, against its documented budget.

    python bench/memory.py [--images 6] [--side 7000] [--content grey|colour] [--budget-mib 2048]

Starts private Redis, SeaweedFS, the API and one Celery worker with one pool process (the
real path: expansion, chunk pipeline, decode, colorize, encode, store), submits one zip of
``--images`` 16-bit RGBA PNGs of ``--side`` x ``--side`` pixels (7000: 49 MP, under the 50 MP
limit), waits for the job, and prints the worker's peak RSS (VmHWM of its processes) beside
``COLORIZE_WORKER_MEMORY_BYTES``. Exit status 0 when the job succeeded within the budget.

Grey content is the case reported (six such PNGs, a 366 KB zip, took a worker to 6.6 GB);
colour content adds the 16-bit L codes of a colour image.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fault_stack import FaultStack
from bench.patient_client import PatientClient
from bench.process_stats import peak_rss_mb
from shared.setting_types import Limits
from shared.settings import Settings


def rgba16_png(side: int, content: str) -> bytes:
    """A 16-bit RGBA PNG: a smooth picture, opaque, grey (three equal channels) or colour."""
    ramp = np.linspace(0, 65535, side, dtype=np.float32)
    grey = ((ramp[None, :] + ramp[:, None]) / 2).astype(np.uint16)
    if content == "grey":
        channels = [grey, grey, grey]
    else:
        channels = [grey, np.broadcast_to(ramp[None, :].astype(np.uint16), grey.shape), 65535 - grey]
    alpha = np.full_like(grey, 65535)
    ok, data = cv2.imencode(".png", np.dstack(channels + [alpha]), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    assert ok
    return data.tobytes()


def zip_of(png: bytes, count: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for n in range(count):
            archive.writestr(f"scan{n:02d}.png", png)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--side", type=int, default=7000)
    parser.add_argument("--content", choices=("grey", "colour"), default="grey")
    parser.add_argument("--budget-mib", type=int, default=Limits().worker_memory_bytes // 1024**2)
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args(argv)

    budget = args.budget_mib * 1024**2
    archive = zip_of(rgba16_png(args.side, args.content), args.images)
    print(
        f"{args.images} {args.content} 16-bit RGBA PNGs of {args.side}x{args.side} "
        f"({args.side * args.side / 1e6:.0f} MP) in a {len(archive) / 1024:.0f} KiB zip; "
        f"worker budget {args.budget_mib} MiB"
    )
    with tempfile.TemporaryDirectory() as tmp:
        base = Settings.from_env().with_overrides(
            limits=Limits(worker_memory_bytes=budget), redis_url=None, s3_endpoint_url=None
        )
        with FaultStack(Path(tmp), base) as stack:
            (worker,) = stack.start_workers(1)
            api = stack.start_api()
            client = PatientClient(api.url)
            started = time.monotonic()
            job = client.submit("scans.zip", archive)
            job = client.wait_for_end(job["id"], timeout_s=args.timeout)
            seconds = time.monotonic() - started
            peak_mib = peak_rss_mb(worker.pid)
    within = peak_mib * 1024**2 <= budget
    print(f"job {job['status']} {job['counts']} in {seconds:.0f} s")
    print(f"worker peak RSS {peak_mib:.0f} MiB of {args.budget_mib} MiB: {'within' if within else 'OVER'} budget")
    return 0 if within and job["status"] == "succeeded" else 1


if __name__ == "__main__":
    raise SystemExit(main())
