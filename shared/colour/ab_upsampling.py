"""Edge-aware upsampling of predicted ab, guided by the full-resolution L.

The network predicts ab on a coarse grid (1/4 of its input, e.g. 32 x 32 for a whole photo);
resized bilinearly, chroma bleeds across edges (sky blue onto a pale wall). The guided filter
used for upsampling (He et al.; the "fast guided filter" form of He & Sun, 2015) fits, in each
3 x 3-cell window of the coarse grid, the local linear model ab = a * L + b against L reduced
to the same grid; the coefficients are resized to full resolution and applied to the
full-resolution L, so chroma changes where the photo's own lightness changes, down to the
pixel, instead of fading linearly across a cell. OpenCV offers only the full-resolution filter
(ximgproc, in the contrib build); fitting on the coarse grid keeps the cost at one 4-channel
bilinear interpolation and two multiply-adds per full-resolution pixel, which the compiled
join (``shared.colour.lab_join``) does as it converts each pixel, so no full-size coefficient image
is ever held.
"""

from __future__ import annotations

import cv2
import numpy as np

# Window radius in cells of the predicted grid: 3 x 3 cells, enough for the fit to see the
# prediction change, small enough not to blur it.
RADIUS = 1
# Regulariser in L units squared: a window whose lightness varies less than this keeps flat
# chroma; with more variation, chroma may follow lightness.
EPSILON = 10.0


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


def source_rows(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray]:
    """For each output row: the upper of the two source rows it blends, and the lower one's
    weight, as OpenCV's bilinear resize maps them (pixel centres aligned, edges clamped)."""
    position = (np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5
    source = np.floor(position).astype(np.int64)
    weight = (position - source).astype(np.float32)
    below, beyond = source < 0, source >= in_size - 1
    source[below], weight[below] = 0, 0
    source[beyond], weight[beyond] = in_size - 1, 0
    return source, weight
