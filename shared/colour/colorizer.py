"""Full-resolution images in, colorized images of the same size out.

The network sees only L resized to its input size; its ab prediction is resized back to the
full image and joined to the original full-resolution L, so detail and tone come from the
input and only chroma from the model.

Memory beyond the inputs and outputs: the L of a colour image, 2 bytes a pixel (a grey image
needs none, ``shared.colour.lab.Lightness``), and buffers of a few row strips shared by the batch;
nothing full-size in float.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from shared.colour.engine import Engine
from shared.colour.hints import Hint
from shared.colour.lab import Lightness, Workspace, join_lightness_and_ab


def model_input(l_full: np.ndarray, size: int) -> np.ndarray:
    """Resize L (H, W) to the model's square input, area-averaging when shrinking."""
    model_l, _ = reduced_lightness(Lightness.of_plane(l_full), size, 1, Workspace())
    return model_l


def reduced_lightness(source: Lightness, size: int, grid: int, workspace: Workspace) -> tuple[np.ndarray, np.ndarray]:
    """The model's input, L resized to size x size (area-averaged when shrinking), and the guide
    of the ab upsampling, L area-averaged to grid x grid; from one pass over L."""
    height, width = source.shape
    if height * width > size * size:
        if height >= size and width >= size and size % grid == 0:
            # Every model-input cell covers the same area of the photo, so averaging whole
            # cells of the input gives the photo's own area average at the coarser grid.
            (model_l,) = source.area_resized([(size, size)], workspace)
            return model_l, cv2.resize(model_l, (grid, grid), interpolation=cv2.INTER_AREA)
        model_l, guide = source.area_resized([(size, size), (grid, grid)], workspace)
        return model_l, guide
    l_full = source.rows(0, height, workspace)
    return (
        cv2.resize(l_full, (size, size), interpolation=cv2.INTER_LINEAR),
        cv2.resize(l_full, (grid, grid), interpolation=cv2.INTER_AREA),
    )


def colorize_batch(
    engine: Engine,
    images: Sequence[np.ndarray],
    temperature: float | None = None,
    hints: Sequence[Sequence[Hint]] | None = None,
) -> list[np.ndarray]:
    """Colorize uint8 BGR images in one forward pass; returns uint8 BGR images of the same sizes.

    ``hints``: one list of colour hints per image (empty: none); HintsNotSupported when any
    is given to a model that takes none.
    """
    if not images:
        return []
    size, grid = engine.input_size, engine.input_size // engine.manifest.downsample
    workspace = Workspace()  # one set of row buffers for the whole batch
    lightness = [Lightness.of(image) for image in images]
    aspects = [image.shape[1] / image.shape[0] for image in images]
    reduced = [reduced_lightness(source, size, grid, workspace) for source in lightness]
    ab_small = engine.predict_ab(np.stack([model_l for model_l, _ in reduced]), temperature, hints, aspects)
    results = []
    guide: np.ndarray | None
    for ab, (_, guide) in zip(ab_small, reduced):
        source = lightness.pop(0)  # each L is freed once joined
        if ab.shape[:2] != guide.shape:
            guide = None  # a model whose grid is not its input size over its downsampling
        results.append(join_lightness_and_ab(source, ab, guide=guide, workspace=workspace))
    return results


def colorize(
    engine: Engine,
    images: Sequence[np.ndarray],
    batch_size: int,
    temperature: float | None = None,
    hints: Sequence[Sequence[Hint]] | None = None,
) -> list[np.ndarray]:
    """Colorize any number of images, ``batch_size`` per forward pass (``hints`` as ``colorize_batch``)."""
    results: list[np.ndarray] = []
    for start in range(0, len(images), batch_size):
        batch_hints = None if hints is None else hints[start : start + batch_size]
        results.extend(colorize_batch(engine, images[start : start + batch_size], temperature, batch_hints))
    return results
