"""Service benchmark: raw engine vs end to end, submit latency under load, memory for big archives.

    python bench/service.py [--images 300] [--big-mb 1024] [--seconds 10] [--eccv16]   (needs the test extra)

Starts the local stack (embedded Redis and SeaweedFS, the API under gunicorn, one Celery
worker with one process per core) on a temporary data directory and prints:

1. raw engine throughput: one process per core, as the worker runs it, each feeding the
   default model batches of ``batch_size`` L images at the model's input size;
2. end-to-end throughput of an archive of 512x512 JPEGs through API -> storage -> workers ->
   storage, and the ratio end-to-end / raw;
3. API submit latency (p50 / p99) of single-image jobs while the workers are busy;
4. peak RSS of the API and worker processes after a small and a big (presigned, multipart)
   archive, to show that memory does not grow with archive size.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
import zipfile
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cli.embedded_services import free_port  # noqa: E402
from cli.local_stack import LocalStack  # noqa: E402
from shared.manifests import load_manifest  # noqa: E402
from shared.settings import Settings  # noqa: E402


# --- inputs ----------------------------------------------------------------------------


def sample_photos() -> list[np.ndarray]:
    from skimage import data
    from sklearn.datasets import load_sample_images

    rgb = [getattr(data, n)() for n in ("astronaut", "coffee", "chelsea", "rocket")]
    rgb += list(load_sample_images().images)
    return [cv2.cvtColor(p, cv2.COLOR_RGB2BGR) for p in rgb]


def jpeg_variants(photos: list[np.ndarray], count: int, side: int, seed: int = 0) -> list[bytes]:
    """``count`` distinct side x side JPEGs: random crops and flips of the sample photos."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        crop = int(min(h, w) * rng.uniform(0.6, 1.0))
        y, x = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
        tile = cv2.resize(photo[y : y + crop, x : x + crop], (side, side), interpolation=cv2.INTER_CUBIC)
        if rng.random() < 0.5:
            tile = tile[:, ::-1]
        grey = cv2.cvtColor(cv2.cvtColor(tile, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        out.append(cv2.imencode(".jpg", grey, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes())
    return out


def write_zip(path: Path, images: list[bytes], repeat_to_bytes: int = 0) -> int:
    """Zip of the images (stored: JPEG does not compress); repeated until ``repeat_to_bytes``."""
    written, n = 0, 0
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        while n < len(images) or written < repeat_to_bytes:
            data = images[n % len(images)]
            archive.writestr(f"batch{n // 100:04d}/photo{n:06d}.jpg", data)
            written += len(data)
            n += 1
    return n


# --- HTTP ------------------------------------------------------------------------------


def request(method: str, url: str, body: bytes | None = None, headers: dict | None = None) -> dict:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=120) as response:
        return json.loads(response.read() or b"{}")


def submit_file(api: str, path: Path) -> str:
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{path.name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    body = head + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    job = request("POST", f"{api}/v1/jobs", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    return job["id"]


def submit_presigned(api: str, path: Path) -> str:
    """Big archives: presigned multipart upload straight to storage, then the job."""
    size = path.stat().st_size
    upload = request("POST", f"{api}/v1/uploads", json.dumps({"filename": path.name, "size": size}).encode(),
                     {"Content-Type": "application/json"})
    with path.open("rb") as handle:
        if "url" in upload:
            urllib.request.urlopen(urllib.request.Request(upload["url"], data=handle, method="PUT",
                                                          headers={"Content-Length": str(size)}), timeout=600)
        else:
            part_size = upload["multipart"]["part_size"]
            parts = []
            for part in upload["multipart"]["parts"]:
                chunk = handle.read(part_size)
                with urllib.request.urlopen(urllib.request.Request(part["url"], data=chunk, method="PUT"), timeout=600) as r:
                    parts.append({"part_number": part["part_number"], "etag": r.headers["ETag"]})
            request("POST", f"{api}/v1/uploads/{upload['upload_id']}/complete", json.dumps({"parts": parts}).encode(),
                    {"Content-Type": "application/json"})
    job = request("POST", f"{api}/v1/jobs", json.dumps({"upload_id": upload["upload_id"], "filename": path.name}).encode(),
                  {"Content-Type": "application/json"})
    return job["id"]


def wait_for(api: str, job_id: str, poll_s: float = 0.2) -> dict:
    while True:
        job = request("GET", f"{api}/v1/jobs/{job_id}")
        if job["status"] in ("succeeded", "partially_succeeded", "failed", "canceled"):
            return job
        time.sleep(poll_s)


# --- measurements ----------------------------------------------------------------------


def _engine_process(args: tuple[str, str, int, float]) -> float:
    models_dir, model, batch, seconds = args
    from bench.throughput import images_per_second
    from worker.engine import Engine

    engine = Engine.load(load_manifest(Path(models_dir), model), device="cpu", threads=1)
    return images_per_second(engine, batch, seconds)


def raw_engine_throughput(settings: Settings, processes: int, seconds: float) -> float:
    args = [(str(settings.models_dir), settings.model, settings.batch_size, seconds)] * processes
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        return sum(pool.map(_engine_process, args))


def process_tree(pid: int) -> list[int]:
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return pids
    for child in children:
        pids += process_tree(int(child))
    return pids


def peak_rss_mb(pid: int) -> float:
    """Largest peak RSS (VmHWM) among a process and its descendants."""
    peaks = []
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
        except OSError:
            continue
    return max(peaks, default=0.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--latency-samples", type=int, default=40)
    parser.add_argument("--small-mb", type=int, default=100)
    parser.add_argument("--big-mb", type=int, default=1024)
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of the raw engine measurement")
    parser.add_argument("--eccv16", action="store_true",
                        help="serve the full ECCV16 architecture (random weights; needs the train extra) instead "
                             "of the configured model: the same service around a network about 26x slower")
    args = parser.parse_args(argv)

    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        base = Settings.from_env().with_overrides(data_dir=tmp / "data", api_port=free_port(), redis_url=None,
                                                  s3_endpoint_url=None)
        if args.eccv16:
            from bench.engine import random_eccv16

            manifest = random_eccv16(tmp / "models" / "eccv16-random")
            base = base.with_overrides(models_dir=tmp / "models", model=manifest.name)
        with LocalStack(base) as stack:
            settings = stack.settings
            api_process = stack.start_api(log_path=tmp / "api.log")
            (worker_process,) = stack.start_workers(1, log_dir=tmp)
            api = stack.api_url
            model = load_manifest(settings.models_dir, settings.model)
            print(f"{cores} cores, model {model.name} (input {model.input_size}), batch {settings.batch_size}, "
                  f"{settings.worker_processes} worker processes\n", flush=True)

            photos = sample_photos()
            images = jpeg_variants(photos, args.images, args.side)
            archive = tmp / "bench.zip"
            write_zip(archive, images)
            warm = tmp / "warm.zip"
            write_zip(warm, images[:2 * cores * settings.batch_size])
            wait_for(api, submit_file(api, warm))  # models loaded, connections open

            raw = raw_engine_throughput(settings, settings.worker_processes, args.seconds)
            print(f"raw engine: {raw:.1f} images/s ({settings.worker_processes} processes x 1 thread)", flush=True)

            started = time.perf_counter()
            job = wait_for(api, submit_file(api, archive))
            elapsed = time.perf_counter() - started
            done = job["counts"]["done"]
            e2e = done / elapsed
            print(f"end to end: {done} images of {args.side}x{args.side} in {elapsed:.1f} s = {e2e:.1f} images/s "
                  f"({job['status']})")
            print(f"ratio end-to-end / raw: {e2e / raw:.1%}\n", flush=True)

            busy = [submit_file(api, archive) for _ in range(2)]
            single = tmp / "single.jpg"
            single.write_bytes(images[0])
            latencies = []
            for _ in range(args.latency_samples):
                t0 = time.perf_counter()
                submit_file(api, single)
                latencies.append((time.perf_counter() - t0) * 1000)
            latencies.sort()
            p99 = latencies[min(len(latencies) - 1, int(round(0.99 * (len(latencies) - 1))))]
            print(f"submit latency while workers are busy ({len(latencies)} single-image jobs): "
                  f"p50 {statistics.median(latencies):.1f} ms, p99 {p99:.1f} ms\n", flush=True)
            for job_id in busy:
                request("POST", f"{api}/v1/jobs/{job_id}/cancel")
            time.sleep(2)

            for label, megabytes in (("small", args.small_mb), ("big", args.big_mb)):
                path = tmp / f"{label}.zip"
                count = write_zip(path, images, repeat_to_bytes=megabytes * 1024**2)
                size_mb = path.stat().st_size / 1024**2
                t0 = time.perf_counter()
                job = wait_for(api, submit_presigned(api, path), poll_s=1.0)
                path.unlink()
                print(f"{label} archive {size_mb:.0f} MB, {count} images: {job['status']} in "
                      f"{time.perf_counter() - t0:.0f} s; peak RSS so far: API {peak_rss_mb(api_process.pid):.0f} MB, "
                      f"worker {peak_rss_mb(worker_process.pid):.0f} MB", flush=True)


if __name__ == "__main__":
    main()
