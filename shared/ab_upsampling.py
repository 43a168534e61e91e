"""Edge-aware upsampling of predicted ab, guided by the full-resolution L.

The network predicts ab on a coarse grid (1/4 of its input, e.g. 32 x 32 for a whole photo);
resized bilinearly, chroma bleeds across edges (sky blue onto a pale wall). The guided filter
used for upsampling (He et al.; the "fast guided filter" form of He & Sun, 2015) fits, in each
3 x 3-cell window of the coarse grid, the local linear model ab = a * L + b against L reduced
to the same grid; the coefficients are resized to full resolution and applied to the
full-resolution L, so chroma changes where the photo's own lightness changes, down to the
pixel, instead of fading linearly across a cell. OpenCV offers only the full-resolution filter
(ximgproc, in the contrib build); fitting on the coarse grid keeps the cost at one 4-channel
resize and two multiply-adds per full-resolution pixel.

:class:`UpsampledRows` gives that resize a few rows at a time, so no full-size coefficient
image is ever held (``shared.lab`` joins L and ab strip by strip).
"""

from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np

# Window radius in cells of the predicted grid: 3 x 3 cells, enough for the fit to see the
# prediction change, small enough not to blur it.
RADIUS = 1
# Regulariser in L units squared: a window whose lightness varies less than this keeps flat
# chroma; with more variation, chroma may follow lightness.
EPSILON = 10.0
# Up to this many pixels, upsampled coefficients are computed for the whole image at once (in
# reused buffers, 24 bytes a pixel), which is faster than blending rows.
WHOLE_PIXELS = 1 << 21


def _box(image: np.ndarray) -> np.ndarray:
    return cv2.boxFilter(image, -1, (2 * RADIUS + 1, 2 * RADIUS + 1), borderType=cv2.BORDER_REFLECT)


def guided_coefficients(guide: np.ndarray, ab_small: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slope and offset (h, w, 2) of ab = slope * L + offset on the coarse grid, fitted against
    ``guide``, the full-resolution L area-averaged to the grid of ``ab_small`` (h, w, 2)."""
    ab = ab_small.astype(np.float32, copy=False)
    mean_l = _box(guide)
    var_l = _box(guide * guide) - mean_l * mean_l
    mean_ab = _box(ab)
    cov = _box(ab * guide[..., None]) - mean_l[..., None] * mean_ab
    slope = cov / (var_l[..., None] + EPSILON)
    offset = mean_ab - slope * mean_l[..., None]
    return slope, offset


def guided_upsample_ab(l_full: np.ndarray, ab_small: np.ndarray) -> np.ndarray:
    """float32 L (H, W) in [0, 100] and ab (h, w, 2) -> float32 ab (H, W, 2) that follows L's edges."""
    height, width = l_full.shape
    grid_h, grid_w = ab_small.shape[:2]
    guide = cv2.resize(l_full, (grid_w, grid_h), interpolation=cv2.INTER_AREA)
    slope, offset = guided_coefficients(guide, ab_small)
    ab_full: np.ndarray = cv2.resize(slope, (width, height), interpolation=cv2.INTER_LINEAR)
    ab_full *= l_full[..., None]
    ab_full += cv2.resize(offset, (width, height), interpolation=cv2.INTER_LINEAR)
    return ab_full


class UpsampledRows:
    """Coarse float32 grids (h, w, c) resized bilinearly to (height, width), a few rows at a time.

    The same numbers as ``cv2.resize(..., INTER_LINEAR)``, which resizes across, then down: the
    grids are resized across once, to full width at their own height, side by side in one
    plane; that plane is resized down whole when it is small enough (``whole_pixels``), else a
    band of rows at a time, each row the blend of the two grid rows around it with the weight
    OpenCV gives it.
    """

    def __init__(
        self, grids: list[np.ndarray], height: int, width: int, buffers: Buffers, whole_pixels: int = WHOLE_PIXELS
    ) -> None:
        grid_h = grids[0].shape[0]
        self.width = width
        self.channels = [g.shape[2] if g.ndim == 3 else 1 for g in grids]
        self.row_size = width * sum(self.channels)
        self.top = buffers.array("grid_rows", (grid_h, self.row_size), np.float32)
        offset = 0
        for grid, channels in zip(grids, self.channels):
            across = cv2.resize(grid.astype(np.float32, copy=False), (width, grid_h), interpolation=cv2.INTER_LINEAR)
            self.top[:, offset : offset + width * channels] = across.reshape(grid_h, -1)
            offset += width * channels
        self.whole: np.ndarray | None = None
        if height * width <= whole_pixels:
            self.whole = cv2.resize(
                self.top,
                (self.row_size, height),
                interpolation=cv2.INTER_LINEAR,
                dst=buffers.array("upsampled", (height, self.row_size), np.float32),
            )
            return
        self.step = buffers.array("grid_steps", (grid_h, self.row_size), np.float32)
        np.subtract(self.top[1:], self.top[:-1], out=self.step[:-1])
        self.step[-1] = 0  # no row below the last
        self.source, self.weight = _source_rows(height, grid_h)
        changes = np.flatnonzero(np.diff(self.source)) + 1
        self.band_starts = np.concatenate([[0], changes])
        self.band_stops = np.concatenate([changes, [height]])
        self.buffers = buffers

    def rows(self, start: int, stop: int) -> list[np.ndarray]:
        """Rows ``start:stop`` of each grid, float32 (stop - start, width, c), valid until the next call."""
        if self.whole is not None:
            out = self.whole[start:stop]
        else:
            out = self.buffers.array("upsampled", (stop - start, self.row_size), np.float32)
            self._blend(start, stop, out)
        views, offset = [], 0
        for channels in self.channels:
            views.append(out[:, offset : offset + self.width * channels].reshape(stop - start, self.width, channels))
            offset += self.width * channels
        return views

    def _blend(self, start: int, stop: int, out: np.ndarray) -> None:
        first = np.searchsorted(self.band_stops, start, side="right")
        for band_start, band_stop in zip(self.band_starts[first:], self.band_stops[first:]):
            if band_start >= stop:
                break
            lo, hi = max(start, band_start), min(stop, band_stop)
            source = self.source[lo]
            part = out[lo - start : hi - start]
            np.multiply(self.weight[lo:hi, None], self.step[source], out=part)
            part += self.top[source]


class Buffers(Protocol):
    def array(self, name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray: ...


def _source_rows(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray]:
    """For each output row: the upper of the two source rows it blends, and the lower one's
    weight, as OpenCV's bilinear resize maps them (pixel centres aligned, edges clamped)."""
    position = (np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5
    source = np.floor(position).astype(np.int64)
    weight = (position - source).astype(np.float32)
    below, beyond = source < 0, source >= in_size - 1
    source[below], weight[below] = 0, 0
    source[beyond], weight[beyond] = in_size - 1, 0
    return source, weight
