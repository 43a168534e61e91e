"""Edge-aware upsampling of predicted ab: chroma follows the edges of L, and nothing else."""

from __future__ import annotations

import cv2
import numpy as np

from shared.colour.ab_upsampling import guided_upsample_ab


def two_regions(size: int = 256, edge: int = 133) -> tuple[np.ndarray, np.ndarray]:
    """A pale wall (L 85, neutral) left of ``edge``, a darker blue sky (L 60) right of it."""
    l_full = np.full((size, size), 85.0, np.float32)
    l_full[:, edge:] = 60.0
    ab_true = np.zeros((size, size, 2), np.float32)
    ab_true[:, edge:] = (-5.0, -40.0)
    return l_full, ab_true


def bilinear(ab_small: np.ndarray, size: int) -> np.ndarray:
    return cv2.resize(ab_small, (size, size), interpolation=cv2.INTER_LINEAR)


def test_chroma_stops_at_the_lightness_edge_instead_of_bleeding() -> None:
    l_full, ab_true = two_regions()
    ab_small = cv2.resize(ab_true, (32, 32), interpolation=cv2.INTER_AREA)  # a coarse, mixed prediction
    guided = guided_upsample_ab(l_full, ab_small)
    plain = bilinear(ab_small, 256)
    band = slice(133 - 12, 133 + 12)  # three grid cells around the edge
    guided_error = np.abs(guided[:, band] - ab_true[:, band]).mean()
    plain_error = np.abs(plain[:, band] - ab_true[:, band]).mean()
    assert guided_error < plain_error / 3
    # the wall next to the sky stays neutral
    assert np.abs(guided[:, 120:133]).max() < 3.0


def test_flat_lightness_gives_the_plain_upsampling() -> None:
    rng = np.random.default_rng(0)
    ab_small = rng.uniform(-30, 30, (16, 16, 2)).astype(np.float32)
    ab_small = cv2.GaussianBlur(ab_small, (5, 5), 1.5)
    l_full = np.full((128, 128), 50.0, np.float32)
    guided = guided_upsample_ab(l_full, ab_small)
    # no lightness to follow: the output is a smoothed version of the prediction, no new colour
    assert np.abs(guided.mean(axis=(0, 1)) - ab_small.mean(axis=(0, 1))).max() < 1.0
    assert guided.min() >= ab_small.min() - 1 and guided.max() <= ab_small.max() + 1


def test_any_size_and_aspect() -> None:
    l_full = np.random.default_rng(1).uniform(0, 100, (37, 301)).astype(np.float32)
    ab = guided_upsample_ab(l_full, np.zeros((8, 8, 2), np.float32))
    assert ab.shape == (37, 301, 2)
    assert np.abs(ab).max() < 1e-3
