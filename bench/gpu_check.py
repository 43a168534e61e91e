"""GPU worker path check: same colours as the CPU path, and images/s at batch 1, 8 and 32.

    python bench/gpu_check.py --model-dir models --model colorize-small --images DIR [--eccv16]

Runs the engine exactly as a worker does (``Engine.load(manifest, device=...)``) on the CPU
and on CUDA, compares the predicted ab and the final colours on real photos, and times
both. ``--eccv16`` adds the full-size ECCV16 architecture (random weights) for throughput.
Prints one JSON document (and writes it to ``--json`` when given).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.engine import random_eccv16
from bench.throughput import images_per_second
from shared.colour.colorizer import model_input
from shared.colour.engine import Engine
from shared.colour.lab import join_lightness_and_ab, lightness
from shared.colour.model_manifests import ModelManifest, load_manifest


def load_photos(folder: Path, count: int) -> list[np.ndarray]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"})
    photos = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in files[:count]]
    return [p for p in photos if p is not None]


def compare(cpu: Engine, gpu: Engine, photos: list[np.ndarray]) -> dict[str, float]:
    l_full = [lightness(p) for p in photos]
    l_small = np.stack([model_input(l, cpu.input_size) for l in l_full])
    ab_cpu = cpu.predict_ab(l_small)
    ab_gpu = gpu.predict_ab(l_small)
    ab_diff = np.abs(ab_cpu - ab_gpu)
    rgb_diff = np.concatenate(
        [
            np.abs(join_lightness_and_ab(l, a).astype(np.int16) - join_lightness_and_ab(l, b).astype(np.int16)).ravel()
            for l, a, b in zip(l_full, ab_cpu, ab_gpu)
        ]
    )
    return {
        "photos": len(photos),
        "ab_max_abs_diff": round(float(ab_diff.max()), 3),
        "ab_mean_abs_diff": round(float(ab_diff.mean()), 4),
        "rgb_max_abs_diff": int(rgb_diff.max()),
        "rgb_mean_abs_diff": round(float(rgb_diff.mean()), 4),
        "rgb_share_within_2_levels": round(float((rgb_diff <= 2).mean()), 5),
    }


def check(manifest: ModelManifest, photos: list[np.ndarray], batches: list[int], seconds: float) -> dict[str, object]:
    cpu = Engine.load(manifest, device="cpu")
    gpu = Engine.load(manifest, device="cuda")
    report: dict[str, object] = {
        "model": manifest.name,
        "gpu_backend": type(gpu._backend).__name__,
        "gpu_device": gpu.device,
    }
    if photos:
        report["cpu_vs_gpu"] = compare(cpu, gpu, photos)
    report["gpu_images_per_s"] = {b: round(images_per_second(gpu, b, seconds), 1) for b in batches}
    report["cpu_images_per_s"] = {b: round(images_per_second(cpu, b, seconds), 1) for b in batches[:2]}
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=Path("models"))
    parser.add_argument("--model", default="default")
    parser.add_argument("--images", type=Path, help="folder of photos for the colour comparison")
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--eccv16", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    photos = load_photos(args.images, args.count) if args.images else []
    reports = [check(load_manifest(args.model_dir, args.model), photos, args.batches, args.seconds)]
    if args.eccv16:
        with tempfile.TemporaryDirectory() as tmp:
            reports.append(check(random_eccv16(Path(tmp) / "eccv16-random"), [], args.batches, args.seconds))
    text = json.dumps(reports, indent=2)
    print(text, flush=True)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
