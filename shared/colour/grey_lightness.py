"""A grey image's L, compiled: whether an 8-bit BGR image is grey, and its L area-averaged to a
smaller size straight from its 8-bit pixels.

A grey image's L is a table lookup of its grey level (``shared.colour.lab``); OpenCV could average it
only once it had been looked up whole into a float image, 4 bytes a pixel, and its area resize
at a scale that is not a whole number (a 1024-pixel photo to a 160-pixel model input) is slow.
Here each row is looked up and added, with its weight, to the output rows it falls in, then
those few rows are averaged across: the same weights as ``cv2.resize(..., INTER_AREA)``
(:func:`area_weights`), summed in another order, so the two agree to float rounding.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from shared.colour.compiled import compiled


def _grey(bgr: np.ndarray) -> bool:
    """Whether the three channels are equal everywhere (compiled by numba, below); row by row,
    so a colour image is usually told within its first rows."""
    height, width = bgr.shape[0], bgr.shape[1]
    for y in range(height):
        differs = np.uint8(0)
        for x in range(np.uint64(width)):
            green = bgr[y, x, np.uint64(1)]
            differs |= (bgr[y, x, np.uint64(0)] ^ green) | (bgr[y, x, np.uint64(2)] ^ green)
        if differs:
            return False
    return True


def _area_average(
    codes: np.ndarray,
    channel: int,
    table: np.ndarray,
    row_entries: np.ndarray,
    row_weights: np.ndarray,
    column_entries: np.ndarray,
    column_weights: np.ndarray,
    out: np.ndarray,
) -> None:
    """L read through ``table`` from channel ``channel`` of integer codes (H, W, C),
    area-averaged into ``out`` (h, w) (compiled by numba, below). ``*_entries`` (n, 2): (source
    index, output index) pairs in source order; ``*_weights`` (n,): the share of the source pixel
    in that output pixel."""
    height_out = out.shape[0]
    width = codes.shape[1]
    index = np.uint64(channel)
    rows = np.zeros((height_out, width), np.float32)  # averaged down, not yet across
    lightness = np.empty(width, np.float32)
    looked_up = -1
    for k in range(row_entries.shape[0]):
        source, target = row_entries[k, 0], row_entries[k, 1]
        if source != looked_up:
            for x in range(np.uint64(width)):
                lightness[x] = table[codes[source, x, index]]
            looked_up = source
        weight = row_weights[k]
        for x in range(np.uint64(width)):
            rows[target, x] += weight * lightness[x]
    out[:] = 0
    for y in range(height_out):
        for k in range(column_entries.shape[0]):
            out[y, column_entries[k, 1]] += column_weights[k] * rows[y, column_entries[k, 0]]


_compiled_grey = compiled(_grey)
_compiled_area_average = compiled(_area_average)


@lru_cache(maxsize=256)
def area_weights(source: int, target: int) -> tuple[np.ndarray, np.ndarray]:
    """(source index, output index) pairs and weights of OpenCV's area resize from ``source``
    to ``target`` pixels (``target <= source``), as its ``computeResizeAreaTab`` lists them:
    each output pixel covers ``source / target`` source pixels, the ones it covers only in part
    (by more than a thousandth) weighted by the part."""
    scale = source / target
    starts = np.arange(target, dtype=np.float64) * scale
    ends = starts + scale
    cells = np.minimum(scale, source - starts)
    first = np.ceil(starts).astype(np.int64)
    last = np.minimum(np.floor(ends).astype(np.int64), source - 1)
    first = np.minimum(first, last)
    pairs: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    outputs = np.arange(target)
    head = first - starts > 1e-3
    pairs.append(np.stack([first[head] - 1, outputs[head]], axis=1))
    weights.append((first - starts)[head] / cells[head])
    counts = last - first
    whole_outputs = np.repeat(outputs, counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    pairs.append(np.stack([np.repeat(first, counts) + offsets, whole_outputs], axis=1))
    weights.append(1.0 / cells[whole_outputs])
    tail = ends - last > 1e-3
    pairs.append(np.stack([last[tail], outputs[tail]], axis=1))
    weights.append(np.minimum(np.minimum(ends - last, 1.0), cells)[tail] / cells[tail])
    entries, shares = np.concatenate(pairs), np.concatenate(weights)
    order = np.lexsort((entries[:, 1], entries[:, 0]))  # by source, as the rows are read
    return np.ascontiguousarray(entries[order]), shares[order].astype(np.float32)


def is_grey(bgr: np.ndarray) -> bool:
    """Whether a uint8 BGR image (H, W, 3) has three equal channels everywhere."""
    return bool(_compiled_grey(np.ascontiguousarray(bgr)))


def area_averaged_lightness(codes: np.ndarray, channel: int, table: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """L read through ``table`` from channel ``channel`` of integer codes (H, W, C) (a grey
    uint8 BGR image's green channel, or ``shared.colour.colour_lightness`` codes), area-averaged to
    ``size`` (width, height), which is no larger either way: float32 (height, width)."""
    width, height = size
    row_entries, row_weights = area_weights(codes.shape[0], height)
    column_entries, column_weights = area_weights(codes.shape[1], width)
    out = np.empty((height, width), np.float32)
    _compiled_area_average(codes, channel, table, row_entries, row_weights, column_entries, column_weights, out)
    return out


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernels, so the first image does not wait."""
    grey = np.zeros((4, 4, 3), np.uint8)
    is_grey(grey)
    area_averaged_lightness(grey, 1, np.zeros(256, np.float32), (2, 2))
    area_averaged_lightness(np.zeros((4, 4, 1), np.uint16), 0, np.zeros(256, np.float32), (2, 2))
