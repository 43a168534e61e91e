"""Full-resolution images in, colorized images of the same size out.

The network sees only L resized to its input size; its ab prediction is resized back to the
full image and joined to the original full-resolution L, so detail and tone come from the
input and only chroma from the model.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from shared.lab import join_lightness_and_ab, lightness
from worker.engine import Engine


def model_input(l_full: np.ndarray, size: int) -> np.ndarray:
    """Resize L (H, W) to the model's square input, area-averaging when shrinking."""
    height, width = l_full.shape
    shrinking = height * width > size * size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(l_full, (size, size), interpolation=interpolation)


def colorize_batch(engine: Engine, images: Sequence[np.ndarray], temperature: float | None = None) -> list[np.ndarray]:
    """Colorize uint8 BGR images in one forward pass; returns uint8 BGR images of the same sizes."""
    if not images:
        return []
    l_full = [lightness(image) for image in images]
    l_small = np.stack([model_input(l, engine.input_size) for l in l_full])
    ab_small = engine.predict_ab(l_small, temperature)
    return [join_lightness_and_ab(l, ab) for l, ab in zip(l_full, ab_small)]


def colorize(engine: Engine, images: Sequence[np.ndarray], batch_size: int, temperature: float | None = None) -> list[np.ndarray]:
    """Colorize any number of images, ``batch_size`` per forward pass."""
    results: list[np.ndarray] = []
    for start in range(0, len(images), batch_size):
        results.extend(colorize_batch(engine, images[start : start + batch_size], temperature))
    return results
