"""The worker's per-image work outside the network against JPEG decode + encode alone.

    python bench/pipeline.py [--rounds 7]

For a 512 x 512 photo and a 1024 x 1024 mosaic of four, each as colour and as grey JPEG (the
usual input), in one process on one thread:

  * codec: ``cv2.imdecode`` + ``encode_jpeg`` of the image alone;
  * float: decode, L from OpenCV's float Lab, model input, the guided join at full size in
    float (the plain OpenCV path), encode;
  * worker: the worker's path (``decode_image``, ``Lightness``, ``reduced_lightness``,
    ``join_lightness_and_ab``, ``encode_jpeg``), at the default model's input size.

Images are processed in batches of 8 as the worker does (one set of buffers per batch, malloc
keeping image memory as in a worker process: ``shared.imaging.allocator``); the network is left out (a
fixed prediction on its output grid). Times are CPU time of this thread, so other processes on
a busy machine do not count; each figure is the best of the rounds, and rounds alternate
between the three, so the ratios compare like with like.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.colour.ab_upsampling import guided_upsample_ab
from shared.colour.colorizer import reduced_lightness
from shared.colour.lab import Lightness, Workspace, bgr_to_lab, join_lightness_and_ab, lab_to_bgr, warm_up
from shared.colour.model_manifests import load_manifest
from shared.imaging.allocator import keep_image_memory
from shared.imaging.decoding import decode_image, encode_jpeg
from shared.settings import Settings

BATCH = 8


def photos() -> list[np.ndarray]:
    from skimage import data

    return [cv2.cvtColor(getattr(data, n)(), cv2.COLOR_RGB2BGR) for n in ("astronaut", "coffee", "chelsea", "rocket")]


def square(photo: np.ndarray, side: int) -> np.ndarray:
    h, w = photo.shape[:2]
    crop = min(h, w)
    top, left = (h - crop) // 2, (w - crop) // 2
    return cv2.resize(photo[top : top + crop, left : left + crop], (side, side), interpolation=cv2.INTER_AREA)


def test_images() -> dict[str, np.ndarray]:
    pictures = photos()
    mosaic = np.vstack(
        [
            np.hstack([square(pictures[0], 512), square(pictures[1], 512)]),
            np.hstack([square(pictures[2], 512), square(pictures[3], 512)]),
        ]
    )
    images = {}
    for name, image in (("512x512", pictures[0]), ("1024x1024", mosaic)):
        images[f"{name} colour"] = image
        images[f"{name} grey"] = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    return images


def codec(jpegs: list[bytes], quality: int) -> None:
    for data in jpegs:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None  # encoded by this benchmark
        encode_jpeg(image, quality)


def float_path(jpegs: list[bytes], settings: Settings, ab: np.ndarray, model_size: int) -> None:
    images = [decode_image(data, settings.limits) for data in jpegs]
    l_full = [np.ascontiguousarray(bgr_to_lab(image)[..., 0]) for image in images]
    model_l = [cv2.resize(l, (model_size, model_size), interpolation=cv2.INTER_AREA) for l in l_full]
    for l in l_full:
        ab_full = guided_upsample_ab(l, ab)
        encode_jpeg(lab_to_bgr(cv2.merge([l, ab_full[..., 0], ab_full[..., 1]])), settings.jpeg_quality)
    del model_l


def worker_path(jpegs: list[bytes], settings: Settings, ab: np.ndarray, model_size: int) -> None:
    images = [decode_image(data, settings.limits) for data in jpegs]
    workspace = Workspace()
    sources = [Lightness.of(image) for image in images]
    reduced = [reduced_lightness(source, model_size, ab.shape[0], workspace) for source in sources]
    for source, (_, guide) in zip(sources, reduced):
        encode_jpeg(join_lightness_and_ab(source, ab, guide=guide, workspace=workspace), settings.jpeg_quality)


def cpu_ms(run: Callable[[], None]) -> float:
    started = time.thread_time()
    run()
    return (time.thread_time() - started) * 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    keep_image_memory()  # as a colorizing worker process does
    settings = Settings.from_env()
    model = load_manifest(settings.models_dir, settings.model)
    size, grid = model.input_size, model.input_size // model.downsample
    ab = cv2.GaussianBlur(np.random.default_rng(0).uniform(-40, 40, (grid, grid, 2)).astype(np.float32), (0, 0), 1)
    warm_up()  # the worker compiles the join before its first image
    print(f"model {model.name}: input {size}, ab grid {grid}")
    print(f"ms per image, CPU time of one thread, best of {args.rounds} rounds of {BATCH}\n")
    print(f"{'image':>17} {'codec':>7} {'float':>7} {'ratio':>6} {'worker':>7} {'ratio':>6}")
    for name, image in test_images().items():
        jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()
        jpegs = [jpeg] * BATCH
        runs = {
            "codec": partial(codec, jpegs, settings.jpeg_quality),
            "float": partial(float_path, jpegs, settings, ab, size),
            "worker": partial(worker_path, jpegs, settings, ab, size),
        }
        best = {label: float("inf") for label in runs}
        for _ in range(args.rounds):
            for label, run in runs.items():
                best[label] = min(best[label], cpu_ms(run) / BATCH)
        c, f, s = best["codec"], best["float"], best["worker"]
        print(f"{name:>17} {c:7.2f} {f:7.2f} {f / c:5.2f}x {s:7.2f} {s / c:5.2f}x")


if __name__ == "__main__":
    main()
