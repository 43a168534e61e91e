"""Simulated colour hints, drawn from a colour photo's own truth (Zhang et al. 2017).

A person places a few points where they know the colour; a simulated hint is the mean true
ab of a small patch (1x1 to 5x5 pixels) at a point drawn at random, half of them uniformly
over the photo and half from a Gaussian about its centre, where people tend to click.
Training draws a geometric-like number of hints per photo; evaluation a fixed number from a
fixed seed, so runs compare.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from shared.colour.hints import Hint
from shared.colour.lab import bgr_to_lab, lab_to_bgr

MAX_PATCH_HALF = 2  # patches of 1x1 to 5x5 pixels
CENTRE_SPREAD = 0.25  # standard deviation of centre-biased points, as a fraction of each side


@dataclass(frozen=True)
class SimulatedHint:
    """A point (column, row) of the photo and the mean true ab of the patch around it."""

    column: int
    row: int
    ab: tuple[float, float]


def hint_count(rng: np.random.Generator, most: int = 50, p: float = 1 / 8) -> int:
    """A geometric-like number of hints, 1 to ``most``: few points far more often than many."""
    return int(min(rng.geometric(p), most))


def simulate(ab: np.ndarray, count: int, rng: np.random.Generator) -> list[SimulatedHint]:
    """``count`` hints from a photo's true ab (H, W, 2)."""
    height, width = ab.shape[:2]
    hints = []
    for index in range(count):
        if index % 2 == 0:
            column, row = int(rng.integers(width)), int(rng.integers(height))
        else:
            column = int(np.clip(rng.normal(0.5, CENTRE_SPREAD) * width, 0, width - 1))
            row = int(np.clip(rng.normal(0.5, CENTRE_SPREAD) * height, 0, height - 1))
        half = int(rng.integers(MAX_PATCH_HALF + 1))
        patch = ab[max(row - half, 0) : row + half + 1, max(column - half, 0) : column + half + 1]
        mean = patch.reshape(-1, 2).mean(axis=0)
        hints.append(SimulatedHint(column, row, (float(mean[0]), float(mean[1]))))
    return hints


def as_hints(simulated: list[SimulatedHint], lab: np.ndarray) -> list[Hint]:
    """The simulated hints as a person would send them: the photo-relative point of each pixel's
    centre and a ``#rrggbb`` colour of the patch's ab at the photo's lightness there."""
    height, width = lab.shape[:2]
    hints = []
    for hint in simulated:
        pixel = np.array([[[lab[hint.row, hint.column, 0], *hint.ab]]], dtype=np.float32)
        blue, green, red = lab_to_bgr(pixel)[0, 0].tolist()
        colour = f"#{red:02x}{green:02x}{blue:02x}"
        hints.append(Hint(x=(hint.column + 0.5) / width, y=(hint.row + 0.5) / height, color=colour))
    return hints


def photo_hints(original: np.ndarray, count: int, key: str) -> list[Hint]:
    """``count`` hints drawn from a colour photo (uint8 BGR) with a seed of its own ``key``
    (its path), so every run and every model get the same hints for the same photo."""
    if count == 0:
        return []
    lab = bgr_to_lab(original)
    rng = np.random.default_rng([zlib.crc32(key.encode()), count])
    return as_hints(simulate(lab[..., 1:], count, rng), lab)
