"""Service benchmark: the service against the same work in plain processes, where its time goes,
submit latency under load, memory for big archives.

    python bench/service.py [--images 300] [--sides 512,1024] [--big-mb 1024] [--eccv16]   (needs the test extra)

Starts the local stack (embedded Redis and SeaweedFS, the API under gunicorn, one Celery
worker with one process per core, its metrics served) on a temporary data directory and
prints, for each image side:

1. the in-process pipeline: as many plain processes as the worker runs, each decoding,
   colorizing (``batch_size`` at a time) and encoding its share of the images, with no
   queue and no storage;
2. end-to-end throughput of a zip of the same images through API -> storage -> workers ->
   storage (sent by presigned upload where it passes the API's request limit, as the client
   does), and the ratio end-to-end / in-process; beside it the raw engine's (the network
   alone on as many inputs, in the same processes) and end-to-end / raw engine;
3. where the time goes: seconds per image of each stage, from the worker's stage metrics
   of that run (``colorize_stage_duration_seconds``), beside the in-process pipeline's;

then API submit latency (p50 / p99) of single-image jobs while the workers are busy, and the
peak RSS of the API and worker processes after a small and a big (presigned, multipart)
archive, to show that memory does not grow with archive size (``--big-mb 0`` skips them).
``--images`` is the count at 512x512; other sides get as many pixels in all.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.api_calls import finished_at, request, submit_archive, submit_bytes, submit_presigned, wait_for
from bench.process_stats import cpu_seconds_by_program, peak_rss_mb
from bench.stage_metrics import stage_table, stage_totals
from cli.embedded_services import free_port
from cli.local_stack import LocalStack
from shared.colour.model_manifests import load_manifest
from shared.settings import Settings

if TYPE_CHECKING:
    from multiprocessing.queues import Queue
    from multiprocessing.synchronize import Barrier

    from shared.colour.engine import Engine

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


def zip_bytes(images: list[bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for n, data in enumerate(images):
            archive.writestr(f"photo{n:06d}.jpg", data)
    return buffer.getvalue()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --- the in-process pipeline -----------------------------------------------------------

# What each pipeline process reports: when it started and ended (seconds since the epoch), its
# seconds by stage, its CPU seconds, and the seconds of the network alone on as many inputs.
PipelineSample = tuple[float, float, dict[str, float], float, float]


def _pipeline_process(
    settings: Settings, images: list[bytes], barrier: Barrier, results: Queue[PipelineSample]
) -> None:
    from shared.colour.colorizer import colorize_batch
    from shared.imaging.allocator import keep_image_memory
    from shared.imaging.decoding import decode_image, encode_jpeg
    from shared.metrics import WorkerMetrics
    from worker.engine_cache import EngineCache

    keep_image_memory()  # as a colorizing worker process does
    engine = EngineCache(settings, WorkerMetrics()).get(settings.model)  # loaded as a worker loads it
    temperature = engine.manifest.temperature
    colorize_batch(engine, [decode_image(images[0], settings.limits)], temperature)  # warm-up
    seconds = {"decode": 0.0, "inference": 0.0, "encode": 0.0}
    barrier.wait()
    started, cpu_started = time.time(), time.process_time()
    for first in range(0, len(images), settings.batch_size):
        t0 = time.perf_counter()
        decoded = [decode_image(data, settings.limits) for data in images[first : first + settings.batch_size]]
        t1 = time.perf_counter()
        colorized = colorize_batch(engine, decoded, temperature)
        t2 = time.perf_counter()
        for image in colorized:
            encode_jpeg(image, settings.jpeg_quality)
        t3 = time.perf_counter()
        seconds["decode"] += t1 - t0
        seconds["inference"] += t2 - t1
        seconds["encode"] += t3 - t2
    results.put(
        (
            started,
            time.time(),
            seconds,
            time.process_time() - cpu_started,
            _raw_engine_s(engine, len(images), settings.batch_size),
        )
    )


def _raw_engine_s(engine: Engine, count: int, batch: int) -> float:
    """Seconds the network alone takes for ``count`` inputs, in batches (the old yardstick)."""
    size = engine.input_size
    inputs = np.random.default_rng(0).uniform(0, 100, (batch, size, size)).astype(np.float32)
    started = time.perf_counter()
    for _ in range(0, count, batch):
        engine.predict_ab(inputs)
    return time.perf_counter() - started


@dataclass
class PipelineRun:
    images_per_s: float
    seconds_per_image: dict[str, float]
    cpu_per_image: float
    raw_engine_images_per_s: float


def in_process_pipeline(settings: Settings, images: list[bytes], processes: int) -> PipelineRun:
    """The images decoded, colorized and encoded in ``processes`` plain processes, each its share."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    workers = [
        context.Process(target=_pipeline_process, args=(settings, images[n::processes], barrier, results))
        for n in range(processes)
    ]
    for worker in workers:
        worker.start()
    runs = [results.get() for _ in workers]
    for worker in workers:
        worker.join()
    elapsed = max(run[1] for run in runs) - min(run[0] for run in runs)
    per_image = {stage: sum(run[2][stage] for run in runs) / len(images) for stage in runs[0][2]}
    raw_engine = len(images) / max(run[4] for run in runs)
    return PipelineRun(len(images) / elapsed, per_image, sum(run[3] for run in runs) / len(images), raw_engine)


# --- the run ---------------------------------------------------------------------------


def throughput_at(
    api: str, metrics_url: str, settings: Settings, photos: list[np.ndarray], side: int, count: int
) -> None:
    images = jpeg_variants(photos, count, side, seed=side)
    processes = settings.worker_processes
    pipeline = in_process_pipeline(settings, images, processes)
    print(
        f"{side}x{side}, {count} images: in-process pipeline {pipeline.images_per_s:.1f} images/s "
        f"({processes} processes)",
        flush=True,
    )
    archive = zip_bytes(images)
    before, cpu_before = stage_totals(metrics_url), cpu_seconds_by_program()
    started = time.time()
    # Polled seldom, timed by the job's own finish: the polls would cost the service CPU.
    job = wait_for(api, submit_archive(api, "bench.zip", archive, settings.limits.max_request_bytes), poll_s=0.5)
    elapsed = finished_at(job) - started
    cpu = {k: v - cpu_before.get(k, 0.0) for k, v in cpu_seconds_by_program().items()}
    time.sleep(0.5)  # the last chunk's metrics land after its results
    stages = stage_totals(metrics_url).minus(before)
    done = job["counts"]["done"]
    e2e = done / elapsed
    print(
        f"{side}x{side}: end to end {done} images in {elapsed:.1f} s = {e2e:.1f} images/s ({job['status']}); "
        f"ratio end-to-end / in-process: {e2e / pipeline.images_per_s:.1%}"
    )
    print(
        f"  raw engine (the network alone in the same processes) {pipeline.raw_engine_images_per_s:.1f} images/s; "
        f"end-to-end / raw engine: {e2e / pipeline.raw_engine_images_per_s:.1%}"
    )
    table = stage_table(stages, max(done, 1), pipeline.seconds_per_image, pipeline.images_per_s, elapsed, processes)
    print("\n".join(table))
    # CPU time, unlike wall time, hardly depends on what else the machine runs.
    service_cpu = sum(cpu.values()) / max(done, 1)
    parts = ", ".join(f"{name} {seconds / max(done, 1) * 1000:.1f}" for name, seconds in sorted(cpu.items()))
    print(
        f"  CPU ms/image: service {service_cpu * 1000:.1f} ({parts}), "
        f"in-process {pipeline.cpu_per_image * 1000:.1f}; in-process / service: "
        f"{pipeline.cpu_per_image / service_cpu:.1%}\n",
        flush=True,
    )


def submit_latency(api: str, photos: list[np.ndarray], count: int, samples: int, limit: int) -> None:
    """p50 and p99 of submitting single images while two archives keep the workers busy."""
    images = jpeg_variants(photos, count, 512)
    archive = zip_bytes(images)
    busy = [submit_archive(api, "busy.zip", archive, limit) for _ in range(2)]
    latencies = []
    for _ in range(samples):
        t0 = time.perf_counter()
        submit_bytes(api, "single.jpg", images[0])
        latencies.append((time.perf_counter() - t0) * 1000)
    print(
        f"submit latency while workers are busy ({len(latencies)} single-image jobs): "
        f"p50 {statistics.median(latencies):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms\n",
        flush=True,
    )
    for job_id in busy:
        request("POST", f"{api}/v1/jobs/{job_id}/cancel")
    time.sleep(2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=300, help="images at 512x512 (other sides: as many pixels)")
    parser.add_argument("--sides", default="512,1024", help="image sides to measure throughput at ('': none)")
    parser.add_argument("--latency-samples", type=int, default=40)
    parser.add_argument("--small-mb", type=int, default=100)
    parser.add_argument("--big-mb", type=int, default=1024, help="0: no memory measurement")
    parser.add_argument(
        "--eccv16",
        action="store_true",
        help="serve the full ECCV16 architecture (random weights; needs the train extra) instead "
        "of the configured model: the same service around a network about 26x slower",
    )
    args = parser.parse_args(argv)

    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        base = Settings.from_env().with_overrides(
            data_dir=tmp / "data",
            api_port=free_port(),
            redis_url=None,
            s3_endpoint_url=None,
            worker_metrics_port=free_port(),
        )
        if args.eccv16:
            from bench.engine import random_eccv16

            manifest = random_eccv16(tmp / "models" / "eccv16-random")
            base = base.with_overrides(models_dir=tmp / "models", model=manifest.name)
        with LocalStack(base) as stack:
            settings = stack.settings
            api_process = stack.start_api(log_path=tmp / "api.log")
            (worker_process,) = stack.start_workers(1, log_dir=tmp)
            api = stack.api_url
            metrics_url = f"http://127.0.0.1:{settings.worker_metrics_port}/metrics"
            model = load_manifest(settings.models_dir, settings.model)
            print(
                f"{cores} cores (load average {os.getloadavg()[0]:.1f}), model {model.name} "
                f"(input {model.input_size}), batch {settings.batch_size}, chunk {settings.chunk_size}, "
                f"{settings.worker_processes} worker processes\n",
                flush=True,
            )

            photos = sample_photos()
            warm = jpeg_variants(photos, 2 * cores * settings.chunk_size, 512)
            wait_for(api, submit_bytes(api, "warm.zip", zip_bytes(warm)))  # models loaded, connections open
            for side in (int(value) for value in args.sides.split(",") if value):
                count = max(settings.batch_size, round(args.images * (512 / side) ** 2))
                throughput_at(api, metrics_url, settings, photos, side, count)

            if args.latency_samples:
                submit_latency(api, photos, args.images, args.latency_samples, settings.limits.max_request_bytes)

            if not args.big_mb:
                return
            images = jpeg_variants(photos, args.images, 512)
            for label, megabytes in (("small", args.small_mb), ("big", args.big_mb)):
                path = tmp / f"{label}.zip"
                count = write_zip(path, images, repeat_to_bytes=megabytes * 1024**2)
                size_mb = path.stat().st_size / 1024**2
                t0 = time.perf_counter()
                job = wait_for(api, submit_presigned(api, path), poll_s=1.0)
                path.unlink()
                print(
                    f"{label} archive {size_mb:.0f} MB, {count} images: {job['status']} in "
                    f"{time.perf_counter() - t0:.0f} s; peak RSS so far: API {peak_rss_mb(api_process.pid):.0f} MB, "
                    f"worker {peak_rss_mb(worker_process.pid):.0f} MB",
                    flush=True,
                )


if __name__ == "__main__":
    main()
