"""Archives of small generated JPEGs to submit as jobs: :func:`small_jpegs` zipped by :func:`zip_archive`."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable

import cv2
import numpy as np


def small_jpegs(count: int, side: int = 32, seed: int = 0) -> list[bytes]:
    """``count`` distinct greyscale JPEGs of ``side`` x ``side`` pixels (gradients with noise)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.0, 1.0, side, dtype=np.float32)
    images = []
    for _ in range(count):
        a, b = rng.uniform(-120, 120, 2)
        pixels = 128 + a * ramp[None, :] + b * ramp[:, None] - (a + b) / 2 + rng.normal(0, 8, (side, side))
        ok, data = cv2.imencode(".jpg", np.clip(pixels, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 85])
        assert ok
        images.append(data.tobytes())
    return images


def zip_archive(files: Iterable[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # JPEG does not compress
        for name, data in files:
            archive.writestr(name, data)
    return buffer.getvalue()
