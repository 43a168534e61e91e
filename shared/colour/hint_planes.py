"""The planes a hint model reads beside L: the hinted ab and where it was hinted, on the model's
square input grid (:mod:`shared.colour.hints` says what a hint is).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shared.colour.hints import Hint
from shared.colour.lab import bgr_to_lab


def hint_ab(color: str) -> tuple[float, float]:
    """The Lab a, b of ``#rrggbb`` (D65, as ``shared.colour.lab``)."""
    red, green, blue = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    lab = bgr_to_lab(np.array([[[blue, green, red]]], dtype=np.uint8))[0, 0]
    return float(lab[1]), float(lab[2])


def hint_planes(hints: Sequence[Hint], size: int, aspect: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """float32 ab (2, size, size), 0 where no hint, and mask (1, size, size): 1 at each hint's
    own cell, and over the rest of a spot (a hint with a radius) weights that add up to 1.

    A hint model was trained on points, and lets every hinted cell of the photo speak for the
    cells that look like it: a spot marked 1 all over would be dozens of points of one colour,
    and floods the whole photo with it. Weighed so, a spot counts as two points, its colour
    given over its whole area.

    ``aspect`` is the photo's width over its height: a radius is a fraction of the longer
    side, so on the square grid a round spot of the photo covers more cells along its
    shorter side. Where spots overlap, the later hint wins.
    """
    ab = np.zeros((2, size, size), dtype=np.float32)
    mask = np.zeros((1, size, size), dtype=np.float32)
    for hint in hints:
        spot = _spot(hint, size, aspect)
        a, b = hint_ab(hint.color)
        ab[0][spot] = a
        ab[1][spot] = b
        if isinstance(spot, np.ndarray):
            mask[0][spot] = 1.0 / max(int(spot.sum()) - 1, 1)
        mask[0][_centre(hint, size)] = 1.0
    return ab, mask


def _centre(hint: Hint, size: int) -> tuple[int, int]:
    return min(int(hint.y * size), size - 1), min(int(hint.x * size), size - 1)


def _spot(hint: Hint, size: int, aspect: float) -> np.ndarray | tuple[int, int]:
    """The cells one hint covers: a boolean (size, size) disc, or the one (row, column) cell."""
    row, column = _centre(hint, size)
    if hint.radius is None:
        return row, column
    # Offsets in units of the photo's longer side: the grid stretches each side to 0..1.
    width, height = min(aspect, 1.0), min(1.0 / aspect, 1.0)
    centres = (np.arange(size, dtype=np.float32) + 0.5) / size
    dx = (centres[None, :] - hint.x) * width
    dy = (centres[:, None] - hint.y) * height
    disc: np.ndarray = dx * dx + dy * dy <= hint.radius * hint.radius
    disc[row, column] = True  # a radius smaller than a cell still marks the cell it falls in
    return disc
