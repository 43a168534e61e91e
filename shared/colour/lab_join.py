"""The full-resolution join, compiled: full-resolution L and the coarse guided-upsampling
coefficients in, 8-bit BGR out, in one pass over the pixels.

Per pixel, ab = slope * L + offset with slope and offset resized bilinearly from the coarse grid
(the same weights as OpenCV's ``INTER_LINEAR``, ``shared.colour.ab_upsampling``), then Lab -> XYZ ->
linear sRGB with the constants of OpenCV's float ``COLOR_Lab2BGR``, clipped, and the sRGB
curve read from a table of ``GAMMA_STEPS`` + 1 levels (a step is at most a twentieth of an
output level). OpenCV's conversion needs the upsampled coefficients and Lab as float images and
converts them in passes of its own; here nothing leaves a row's buffers, and the join of a
512 x 512 photo takes about 1.1 ms of one core instead of 2.7, within one level of the float
path.

The kernels are compiled by numba (``shared.colour.compiled``).
"""

from __future__ import annotations

import numpy as np

from shared.colour.ab_upsampling import source_rows
from shared.colour.compiled import compiled

# sRGB curve table: linear [0, 1] in this many steps. Near black the curve is steepest (12.92),
# where a step moves the output 255 * 12.92 / 65536 = 0.05 of a level at most; a coarser table
# (1 << 14) rounds four times as many values to the other side of OpenCV's.
GAMMA_STEPS = 1 << 16

# OpenCV's XYZ -> sRGB matrix and D65 white point for Lab -> RGB (its color_lab.cpp); the
# training's differentiable conversion uses them too.
XYZ_TO_RGB = np.array(
    [[3.240479, -1.53715, -0.498535], [-0.969256, 1.875991, 0.041556], [0.055648, -0.204043, 1.057311]]
)
D65_WHITE = np.array([0.950456, 1.0, 1.088754])
# Rows in BGR order, the white point folded in: BGR = matrix @ (fx^3, fy^3, fz^3).
_XYZ_TO_BGR = np.ascontiguousarray((XYZ_TO_RGB[::-1] * D65_WHITE).astype(np.float32))


def _gamma_table() -> np.ndarray:
    linear = np.arange(GAMMA_STEPS + 1, dtype=np.float64) / GAMMA_STEPS
    encoded = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * np.power(linear, 1 / 2.4) - 0.055)
    return np.round(encoded * 255).astype(np.uint8)


_GAMMA = _gamma_table()


def _convert_row(
    lightness_row: np.ndarray,
    y: int,
    slope: np.ndarray,
    offset: np.ndarray,
    grid_rows: np.ndarray,
    row_weights: np.ndarray,
    cell_spans: np.ndarray,
    column_weights: np.ndarray,
    xyz_to_bgr: np.ndarray,
    gamma: np.ndarray,
    coefficients: np.ndarray,
    linear: np.ndarray,
    out_row: np.ndarray,
) -> None:
    """One output row (compiled by numba, below). ``coefficients`` (w, 4) and ``linear`` (3, W)
    are scratch. Unsigned loop indices let numba drop its negative-index checks, which is what
    lets the pixel loops use vector instructions."""
    width = lightness_row.shape[0]
    grid_h, grid_w = slope.shape[0], slope.shape[1]
    steps = np.float32(gamma.shape[0] - 1)
    m00, m01, m02 = xyz_to_bgr[0, 0], xyz_to_bgr[0, 1], xyz_to_bgr[0, 2]
    m10, m11, m12 = xyz_to_bgr[1, 0], xyz_to_bgr[1, 1], xyz_to_bgr[1, 2]
    m20, m21, m22 = xyz_to_bgr[2, 0], xyz_to_bgr[2, 1], xyz_to_bgr[2, 2]
    zero, one, half = np.float32(0.0), np.float32(1.0), np.float32(0.5)
    upper = grid_rows[y]
    lower = min(upper + 1, grid_h - 1)
    down = row_weights[y]
    for j in range(grid_w):
        for c in range(2):
            coefficients[j, c] = slope[upper, j, c] + down * (slope[lower, j, c] - slope[upper, j, c])
            coefficients[j, 2 + c] = offset[upper, j, c] + down * (offset[lower, j, c] - offset[upper, j, c])
    for j in range(grid_w):
        right = min(j + 1, grid_w - 1)
        sa, dsa = coefficients[j, 0], coefficients[right, 0] - coefficients[j, 0]
        sb, dsb = coefficients[j, 1], coefficients[right, 1] - coefficients[j, 1]
        oa, doa = coefficients[j, 2], coefficients[right, 2] - coefficients[j, 2]
        ob, dob = coefficients[j, 3], coefficients[right, 3] - coefficients[j, 3]
        for x in range(cell_spans[j, 0], cell_spans[j, 1]):
            across = column_weights[x]
            lightness = lightness_row[x]
            a = (sa + across * dsa) * lightness + oa + across * doa
            b = (sb + across * dsb) * lightness + ob + across * dob
            # OpenCV's threshold and slopes for the linear part near black.
            dark = lightness <= np.float32(7.9996248)
            fy_curve = (lightness + np.float32(16.0)) * np.float32(1.0 / 116.0)
            fy = lightness * np.float32(7.787 / 903.3) + np.float32(16.0 / 116.0) if dark else fy_curve
            y_lin = lightness * np.float32(1.0 / 903.3) if dark else fy_curve * fy_curve * fy_curve
            fx = fy + a * np.float32(1.0 / 500.0)
            fz = fy - b * np.float32(1.0 / 200.0)
            x_lin = (fx - np.float32(16.0 / 116.0)) * np.float32(1.0 / 7.787)
            if fx > np.float32(0.20689303):
                x_lin = fx * fx * fx
            z_lin = (fz - np.float32(16.0 / 116.0)) * np.float32(1.0 / 7.787)
            if fz > np.float32(0.20689303):
                z_lin = fz * fz * fz
            blue = m00 * x_lin + m01 * y_lin + m02 * z_lin
            green = m10 * x_lin + m11 * y_lin + m12 * z_lin
            red = m20 * x_lin + m21 * y_lin + m22 * z_lin
            linear[np.uint64(0), x] = min(max(blue, zero), one) * steps + half
            linear[np.uint64(1), x] = min(max(green, zero), one) * steps + half
            linear[np.uint64(2), x] = min(max(red, zero), one) * steps + half
    for x in range(np.uint64(width)):
        out_row[x, np.uint64(0)] = gamma[np.uint64(linear[np.uint64(0), x])]
        out_row[x, np.uint64(1)] = gamma[np.uint64(linear[np.uint64(1), x])]
        out_row[x, np.uint64(2)] = gamma[np.uint64(linear[np.uint64(2), x])]


_compiled_convert_row = compiled(_convert_row)


def _join_float(plane: np.ndarray, conversion: tuple[np.ndarray, ...], out: np.ndarray) -> None:
    """Every row of a float32 L plane (H, W) (compiled by numba, below). ``conversion``: the
    arguments of ``_convert_row`` from ``slope`` to ``gamma``."""
    coefficients = np.empty((conversion[0].shape[1], 4), np.float32)
    linear = np.empty((3, plane.shape[1]), np.float32)
    for y in range(plane.shape[0]):
        _compiled_convert_row(plane[y], y, *conversion, coefficients, linear, out[y])


def _join_coded(
    codes: np.ndarray, channel: int, table: np.ndarray, conversion: tuple[np.ndarray, ...], out: np.ndarray
) -> None:
    """Every row of integer codes (H, W, C), L read through ``table`` from channel ``channel``
    (compiled by numba, below)."""
    width = codes.shape[1]
    coefficients = np.empty((conversion[0].shape[1], 4), np.float32)
    linear = np.empty((3, width), np.float32)
    lightness_row = np.empty(width, np.float32)
    index = np.uint64(channel)
    for y in range(codes.shape[0]):
        for x in range(np.uint64(width)):
            lightness_row[x] = table[codes[y, x, index]]
        _compiled_convert_row(lightness_row, y, *conversion, coefficients, linear, out[y])


_compiled_join_float = compiled(_join_float)
_compiled_join_coded = compiled(_join_coded)


class JoinGrid:
    """Where each full-resolution pixel lies on the coarse grid: for each row the grid row above
    it and the weight of the one below, for each grid column the span of pixel columns between
    it and the next, and each column's weight of the next."""

    def __init__(self, height: int, width: int, grid_h: int, grid_w: int) -> None:
        self.grid_rows, self.row_weights = source_rows(height, grid_h)
        columns, self.column_weights = source_rows(width, grid_w)
        # Pixel columns are in grid-column order: each grid column's span is contiguous.
        starts = np.searchsorted(columns, np.arange(grid_w), side="left")
        stops = np.searchsorted(columns, np.arange(grid_w), side="right")
        self.cell_spans = np.ascontiguousarray(np.stack([starts, stops], axis=1).astype(np.uint64))


def join(
    plane: np.ndarray,
    table: np.ndarray | None,
    channel: int,
    slope: np.ndarray,
    offset: np.ndarray,
    out: np.ndarray,
) -> np.ndarray:
    """Write into ``out`` (H, W, 3) the uint8 BGR of L and ab = slope * L + offset, ``slope`` and
    ``offset`` float32 (h, w, 2) upsampled bilinearly. L is ``plane`` (H, W) float32, or read
    through ``table`` from channel ``channel`` of integer codes ``plane`` (H, W, C)."""
    height, width = plane.shape[:2]
    grid = JoinGrid(height, width, slope.shape[0], slope.shape[1])
    conversion = (
        np.ascontiguousarray(slope, dtype=np.float32),
        np.ascontiguousarray(offset, dtype=np.float32),
        grid.grid_rows,
        grid.row_weights,
        grid.cell_spans,
        grid.column_weights,
        _XYZ_TO_BGR,
        _GAMMA,
    )
    if table is None:
        _compiled_join_float(np.ascontiguousarray(plane, dtype=np.float32), conversion, out)
    else:
        _compiled_join_coded(plane, channel, table, conversion, out)
    return out


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernels, so the first image does not wait."""
    coefficients = np.zeros((2, 2, 2), np.float32)
    out = np.empty((4, 4, 3), np.uint8)
    join(np.zeros((4, 4), np.float32), None, 0, coefficients, coefficients, out)
    join(np.zeros((4, 4, 3), np.uint8), np.zeros(256, np.float32), 1, coefficients, coefficients, out)
    join(np.zeros((4, 4, 1), np.uint16), np.zeros(256, np.float32), 0, coefficients, coefficients, out)
