"""The colours a hint model finds most likely at one point of a photo, offered when placing a hint.

The network already computes a distribution over the 313 ab bins at every cell of its output
grid; a hint model's graph also outputs it (``ModelManifest.probabilities_output``). Each of
the most probable bins becomes a colour with the photo's own lightness at that point, so the
offered swatches are as light or dark as the spot the person clicked.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shared.colour.bins import ab_bins
from shared.colour.colorizer import reduced_lightness
from shared.colour.engine import Engine
from shared.colour.hints import Hint
from shared.colour.lab import Lightness, Workspace, lab_to_bgr


def likely_colours(
    engine: Engine, image: np.ndarray, x: float, y: float, count: int = 5, hints: Sequence[Hint] = ()
) -> list[str]:
    """``count`` hex colours (``#rrggbb``), most probable first, at (x, y) in 0..1 of uint8 BGR ``image``,
    given the hints already placed; HintsNotSupported for a model that does not offer them."""
    size = engine.input_size
    source = Lightness.of(image)
    model_l, _ = reduced_lightness(source, size, 1, Workspace())
    aspect = image.shape[1] / image.shape[0]
    probabilities = engine.predict_probabilities(model_l[None], [list(hints)], [aspect])[0]
    _, grid_h, grid_w = probabilities.shape
    cell = probabilities[:, min(int(y * grid_h), grid_h - 1), min(int(x * grid_w), grid_w - 1)]
    ranked = np.argsort(-cell, kind="stable")[:count]
    lightness = _lightness_at(model_l, x, y)
    ab = ab_bins()[ranked].astype(np.float32)
    lab = np.concatenate([np.full((len(ranked), 1), lightness, np.float32), ab], axis=1)
    bgr = lab_to_bgr(lab[None])[0]
    return [f"#{red:02x}{green:02x}{blue:02x}" for blue, green, red in bgr.tolist()]


def _lightness_at(model_l: np.ndarray, x: float, y: float) -> float:
    """Mean L of the model-input cells around (x, y): one pixel of a photo may be a speck."""
    size = model_l.shape[0]
    column, row = min(int(x * size), size - 1), min(int(y * size), size - 1)
    patch = model_l[max(row - 1, 0) : row + 2, max(column - 1, 0) : column + 2]
    return float(patch.mean())
