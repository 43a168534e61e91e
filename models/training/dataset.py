"""Training images: square crops held in memory as Lab, and the packed copy that travels.

Every photo is resized (short side = ``size``) and centre-cropped to ``size`` x ``size`` once;
random crops, scales and flips are then drawn from that copy on the training device.
"""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def image_files(root: Path) -> list[Path]:
    """All image files under ``root``, in a stable order."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def square_crop(path: Path, size: int) -> np.ndarray | None:
    """uint8 BGR (size, size, 3): short side resized to ``size``, centre crop. None if unreadable."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        return None
    height, width = image.shape[:2]
    scale = size / min(height, width)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    image = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return image[top : top + size, left : left + size]


def lab_crop(args: tuple[Path, int]) -> np.ndarray | None:
    crop = square_crop(*args)
    if crop is None:
        return None
    return cv2.cvtColor(crop.astype(np.float32) / 255.0, cv2.COLOR_BGR2Lab).astype(np.float16)


def load_lab_crops(root: Path, size: int, workers: int | None = None) -> np.ndarray:
    """(N, size, size, 3) float16 Lab crops of every readable image under ``root``."""
    files = image_files(root)
    if not files:
        raise SystemExit(f"no images found under {root}")
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
        crops = [c for c in pool.map(lab_crop, [(f, size) for f in files], chunksize=64) if c is not None]
    return np.stack(crops)


def _pack_one(args: tuple[Path, Path, int, int]) -> int:
    source, target, size, quality = args
    crop = square_crop(source, size)
    if crop is None:
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(".webp", crop, [cv2.IMWRITE_WEBP_QUALITY, quality])
    if not ok:
        return 0
    target.write_bytes(data.tobytes())
    return len(data)


def pack(root: Path, out: Path, size: int, quality: int) -> int:
    """Write the square crops of ``root`` as WebP files under ``out``; returns total bytes.

    The packed copy is what travels to a remote training machine; training on it or on the
    original folder sees the same crops, up to WebP compression.
    """
    jobs = [(f, out / f.relative_to(root).with_suffix(".webp"), size, quality) for f in image_files(root)]
    with ProcessPoolExecutor() as pool:
        return sum(pool.map(_pack_one, jobs, chunksize=64))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Pack training photos as small square WebP crops.")
    parser.add_argument("--data", type=Path, required=True, help="folder of colour photos")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--quality", type=int, default=75)
    args = parser.parse_args(argv)
    total = pack(args.data, args.out, args.size, args.quality)
    print(f"packed {len(image_files(args.out))} images, {total / 2**20:.1f} MiB, into {args.out}")


if __name__ == "__main__":
    main()
