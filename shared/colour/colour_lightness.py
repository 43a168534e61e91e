"""A colour image's L, compiled: the same numbers as OpenCV's float sRGB -> Lab, from 8-bit
pixels, at about a third of its cost, kept as 16-bit codes (2 bytes a pixel instead of 4).

OpenCV's float conversion (``cv2.cvtColor`` of BGR scaled to [0, 1], ``COLOR_BGR2Lab``) does not
evaluate the CIE formulas: it rounds each channel to 14 bits and interpolates a 33 x 33 x 33
table trilinearly, in integers with 4-bit weights. Its table is read back from OpenCV itself (at
the grid's own colours the interpolation returns the table's entries), so nothing here restates
its formulas. For 8-bit input each channel takes one of 256 values, so the interpolation over
green and red is done once for every (green, red) pair and every blue cell of the grid; a pixel
then costs two reads and one blend across blue. tests/test_lab.py checks every one of the
16,777,216 colours against OpenCV. The table takes 9 MB of each process that colorizes.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from shared.colour.compiled import compiled

_CELLS = 32  # grid intervals per channel
_FIXED_ONE = 1 << 14  # a channel's full scale in OpenCV's fixed point
_FRACTION_BITS = 4
_WEIGHT_ONE = 1 << _FRACTION_BITS
_DESCALE_BITS = 3 * _FRACTION_BITS


def _lightness_codes(
    bgr: np.ndarray, green_red: np.ndarray, blue_cells: np.ndarray, blue_weights: np.ndarray, out: np.ndarray
) -> None:
    """L of uint8 BGR (H, W, 3) in fixed point into ``out`` (H, W) uint16 (compiled by numba,
    below)."""
    height, width = bgr.shape[0], bgr.shape[1]
    for y in range(height):
        for x in range(np.uint64(width)):
            blue = bgr[y, x, np.uint64(0)]
            blended = green_red[bgr[y, x, np.uint64(1)], bgr[y, x, np.uint64(2)]]
            cell, weight = blue_cells[blue], blue_weights[blue]
            total = (_WEIGHT_ONE - weight) * blended[cell] + weight * blended[cell + 1]
            out[y, x] = (total + (1 << (_DESCALE_BITS - 1))) >> _DESCALE_BITS


_compiled_lightness_codes = compiled(_lightness_codes)

# L of each fixed-point code, as OpenCV scales it (a power of two times 25: exact in float32).
CODE_LIGHTNESS = np.arange(_FIXED_ONE + 1, dtype=np.float32) * np.float32(100 / _FIXED_ONE)


def _grid_lightness() -> np.ndarray:
    """OpenCV's table of L in fixed point, (blue, green, red) cells, one extra cell at the top
    of each axis (read only with weight 0)."""
    levels = np.arange(_CELLS + 1, dtype=np.float32) / np.float32(_CELLS)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1)
    lab = cv2.cvtColor(grid.reshape(-1, 1, 3), cv2.COLOR_BGR2Lab)
    fixed = np.rint(lab[:, 0, 0].astype(np.float64) * (_FIXED_ONE / 100)).astype(np.int32)
    return np.pad(fixed.reshape(grid.shape[:3]), ((0, 1), (0, 1), (0, 1)), mode="edge")


def _channel_cells() -> tuple[np.ndarray, np.ndarray]:
    """Grid cell and 4-bit weight of each 8-bit channel value, as OpenCV rounds it."""
    unit = np.arange(256, dtype=np.float32) * np.float32(1 / 255)
    fixed = np.rint(unit * np.float32(_FIXED_ONE)).astype(np.int32)
    step_bits = 14 - 5  # 2**5 cells of 2**9 fixed-point steps
    return fixed >> step_bits, (fixed >> (step_bits - _FRACTION_BITS)) & (_WEIGHT_ONE - 1)


@lru_cache(maxsize=1)
def _tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(green, red, blue cell) -> the table interpolated over green and red (256, 256, 34) int32
    (9 MB, built in about 0.1 s); the blue cells and weights of each 8-bit value."""
    grid = np.moveaxis(_grid_lightness(), 0, -1)  # (green, red, blue)
    cells, weights = _channel_cells()
    green_red = np.zeros((256, 256, grid.shape[2]), np.int32)
    for green_step in (0, 1):
        green_weights = weights if green_step else _WEIGHT_ONE - weights
        for red_step in (0, 1):
            red_weights = weights if red_step else _WEIGHT_ONE - weights
            corner = grid[cells[:, None] + green_step, cells[None, :] + red_step]
            corner *= (green_weights[:, None] * red_weights[None, :])[..., None]
            green_red += corner
    return green_red, cells, weights


def lightness_codes(bgr: np.ndarray) -> np.ndarray:
    """L of a uint8 BGR image (H, W, 3) as uint16 (H, W) codes, 2 bytes a pixel instead of a
    float's 4: ``CODE_LIGHTNESS[codes]`` equals OpenCV's float conversion of the image scaled
    to [0, 1]."""
    green_red, cells, weights = _tables()
    out = np.empty(bgr.shape[:2], np.uint16)
    _compiled_lightness_codes(np.ascontiguousarray(bgr), green_red, cells, weights, out)
    return out


def warm_up() -> None:
    """Build the table and compile the kernel (or load it from numba's cache)."""
    lightness_codes(np.zeros((2, 2, 3), np.uint8))
