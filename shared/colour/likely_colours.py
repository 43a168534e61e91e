"""The colours a hint model finds most likely at each point of a photo, offered when placing a hint.

The network already computes a distribution over the 313 ab bins at every cell of its output
grid; a hint model's graph also outputs it (``ModelManifest.probabilities_output``). Each of
a cell's most probable bins becomes a colour with the photo's own lightness there, so the
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
from shared.colour.likely_colour_grid import LikelyColourGrid

OFFERED = 5  # colours offered at a point


def likely_colour_grid(
    engine: Engine, image: np.ndarray, hints: Sequence[Hint] = (), count: int = OFFERED
) -> LikelyColourGrid:
    """Every cell's ``count`` most probable colours for uint8 BGR ``image``, given the hints
    already placed; HintsNotSupported for a model that does not output its probabilities."""
    size = engine.input_size
    model_l, _ = reduced_lightness(Lightness.of(image), size, 1, Workspace())
    aspect = image.shape[1] / image.shape[0]
    probabilities = engine.predict_probabilities(model_l[None], [list(hints)], [aspect])[0]
    bins, rows, columns = probabilities.shape
    cells = probabilities.reshape(bins, rows * columns).T  # (cells, bins)
    likeliest = np.argpartition(-cells, count, axis=1)[:, :count]  # (cells, count), unordered
    order = np.argsort(-np.take_along_axis(cells, likeliest, axis=1), axis=1, kind="stable")
    ranked = np.take_along_axis(likeliest, order, axis=1)
    shares = np.take_along_axis(cells, ranked, axis=1).astype(np.float64)
    lightness = _cell_lightness(model_l, rows, columns)  # (cells,)
    lab = np.concatenate(
        [np.repeat(lightness[:, None, None], count, axis=1), ab_bins()[ranked].astype(np.float32)], axis=2
    )
    bgr = lab_to_bgr(lab.astype(np.float32))  # (cells, count, 3)
    colours = [[f"#{r:02x}{g:02x}{b:02x}" for b, g, r in cell] for cell in bgr.tolist()]
    return LikelyColourGrid(rows, columns, colours, np.round(shares, 3).tolist())


def _cell_lightness(model_l: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """Mean L of the model input over each output cell: one pixel of a photo may be a speck."""
    size = model_l.shape[0]
    cells = model_l[: size // rows * rows, : size // columns * columns].reshape(rows, size // rows, columns, -1)
    means: np.ndarray = cells.mean(axis=(1, 3)).reshape(-1).astype(np.float32)
    return means
