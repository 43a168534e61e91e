"""Conversions between 8-bit sRGB (OpenCV's BGR order) and CIE Lab, and the L + ab join.

Lab values are floats: L in [0, 100], a and b roughly in [-128, 127] (D65, as OpenCV).

OpenCV's float conversions are the reference. Full-resolution work takes cheaper routes to the
same numbers and never holds a whole image in float:

* L of a grey image (the usual input) is a table lookup of its grey level, read from the image
  itself a strip of rows at a time (:class:`Lightness`); a colour image's L is converted a strip
  at a time and kept in float;
* the join converts row strips: ab upsampled for the strip's rows only, Lab to BGR, 8 bits.

Strip loops work in a :class:`Workspace`, buffers reused from strip to strip and image to
image: fresh memory costs a page fault every 4 KiB, on a busy machine more than the arithmetic.
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from shared.ab_upsampling import WHOLE_PIXELS, UpsampledRows, guided_coefficients

# Pixels per row strip: a strip's float intermediates (about 40 bytes a pixel) stay in cache.
STRIP_PIXELS = 1 << 16


def bgr_to_lab(bgr: np.ndarray) -> np.ndarray:
    """uint8 BGR (H, W, 3) -> float32 Lab (H, W, 3)."""
    return cv2.cvtColor(bgr.astype(np.float32) * np.float32(1 / 255), cv2.COLOR_BGR2Lab)


def lab_to_bgr(lab: np.ndarray) -> np.ndarray:
    """float32 Lab (H, W, 3) -> uint8 BGR, out-of-gamut colours clipped."""
    return _to_uint8(cv2.cvtColor(lab.astype(np.float32, copy=False), cv2.COLOR_Lab2BGR))


def _to_uint8(unit: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    # Rounds and saturates in one pass; the values are in [0, 1] already, so the absolute
    # value this OpenCV function also takes changes nothing.
    return cv2.convertScaleAbs(unit, dst=out, alpha=255.0)


class Workspace:
    """Named buffers that strip loops reuse; each grows to the largest size asked of it."""

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def array(self, name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        """A C-contiguous array of ``shape`` over buffer ``name`` (its contents are undefined)."""
        size = int(np.prod(shape))
        buffer = self._buffers.get(name)
        if buffer is None or buffer.size < size or buffer.dtype != dtype:
            buffer = self._buffers[name] = np.empty(size, dtype)
        return buffer[:size].reshape(shape)


def row_strips(height: int, width: int) -> Iterator[tuple[int, int]]:
    """Row ranges of at most ``STRIP_PIXELS`` pixels (one row at least) covering ``height`` rows."""
    rows = strip_rows(width)
    for start in range(0, height, rows):
        yield start, min(height, start + rows)


def strip_rows(width: int) -> int:
    return max(1, STRIP_PIXELS // max(1, width))


# --- L -------------------------------------------------------------------------------


def _grey_lightness() -> np.ndarray:
    """L of each grey level, as OpenCV's float conversion computes it."""
    levels = cv2.cvtColor(np.arange(256, dtype=np.uint8)[None], cv2.COLOR_GRAY2BGR)
    return bgr_to_lab(levels)[0, :, 0].copy()


_GREY_LIGHTNESS = _grey_lightness()


class Lightness:
    """L of one image, read back as float32 rows.

    A grey image is read from its own green channel through a table of the 256 grey levels'
    L, which needs no memory of its own; other L is held in float, 4 bytes a pixel. (OpenCV's
    float sRGB -> Lab interpolates a table in three dimensions, so L of a colour is not a
    function of a weighted sum of its channels that a smaller table could reproduce exactly; a
    tenth of a unit of L moves the network's prediction by a few tenths of a unit of ab.)
    """

    def __init__(self, plane: np.ndarray, table: np.ndarray | None) -> None:
        self.plane = plane  # (H, W, 3) uint8 grey BGR read through ``table``, or (H, W) float32 L
        self.table = table

    @classmethod
    def of(cls, bgr: np.ndarray, workspace: Workspace | None = None) -> Lightness:
        """L of a uint8 BGR image (H, W, 3), exactly as OpenCV's float conversion computes it."""
        workspace = workspace or Workspace()
        if _is_grey(bgr, workspace):
            return cls(bgr, _GREY_LIGHTNESS)
        height, width = bgr.shape[:2]
        l_full = np.empty((height, width), np.float32)
        for start, stop in row_strips(height, width):
            shape = (stop - start, width, 3)
            unit = np.multiply(bgr[start:stop], np.float32(1 / 255), out=workspace.array("unit", shape, np.float32))
            lab = cv2.cvtColor(unit, cv2.COLOR_BGR2Lab, dst=workspace.array("lab", shape, np.float32))
            cv2.extractChannel(lab, 0, dst=l_full[start:stop])
        return cls(l_full, None)

    @classmethod
    def of_plane(cls, l_full: np.ndarray) -> Lightness:
        """An L plane already computed (float, [0, 100])."""
        return cls(np.ascontiguousarray(l_full, dtype=np.float32), None)

    @property
    def shape(self) -> tuple[int, int]:
        return self.plane.shape[:2]

    def rows(self, start: int, stop: int, workspace: Workspace) -> np.ndarray:
        """float32 L of rows ``start:stop``, valid until the workspace's next ``rows``."""
        plane = self.plane[start:stop]
        if self.table is None:
            return plane
        green = cv2.extractChannel(plane, 1, dst=workspace.array("channel", plane.shape[:2], np.uint8))
        return cv2.LUT(green, self.table, dst=workspace.array("l_rows", plane.shape[:2], np.float32))

    def rows_thrice(self, start: int, stop: int, workspace: Workspace) -> np.ndarray:
        """float32 (stop - start, W, 3): L of rows ``start:stop`` in each of three channels."""
        plane = self.plane[start:stop]
        out = workspace.array("l_thrice", (*plane.shape[:2], 3), np.float32)
        if self.table is None:
            return cv2.merge([plane, plane, plane], dst=out)
        return cv2.LUT(plane, self.table, dst=out)  # a grey BGR pixel's three equal levels

    def area_resized(self, sizes: list[tuple[int, int]], workspace: Workspace | None = None) -> list[np.ndarray]:
        """L resized to each (width, height) with ``cv2.INTER_AREA``.

        Up to ``WHOLE_PIXELS``, L is looked up whole into a reused buffer (OpenCV's whole-image
        area resize is several times faster than strips). Larger images shrinking both ways are
        read once, in strips: each strip is averaged across, then the strips are averaged down,
        which is how OpenCV's area resize computes it too."""
        workspace = workspace or Workspace()
        full_h, full_w = self.shape
        enlarging = any(full_h < height or full_w < width for width, height in sizes)
        if self.table is None or enlarging or full_h * full_w <= WHOLE_PIXELS:
            l_full = self.rows(0, full_h, workspace)
            return [cv2.resize(l_full, size, interpolation=cv2.INTER_AREA) for size in sizes]
        columns = [workspace.array(f"columns{i}", (full_h, width), np.float32) for i, (width, _) in enumerate(sizes)]
        for start, stop in row_strips(full_h, full_w):
            rows = self.rows(start, stop, workspace)
            for (width, _), column in zip(sizes, columns):
                cv2.resize(rows, (width, stop - start), dst=column[start:stop], interpolation=cv2.INTER_AREA)
        return [cv2.resize(column, size, interpolation=cv2.INTER_AREA) for size, column in zip(sizes, columns)]


def _is_grey(bgr: np.ndarray, workspace: Workspace) -> bool:
    """Whether the three channels of a BGR image are equal everywhere."""
    height, width = bgr.shape[:2]
    for start, stop in row_strips(height, width):
        strip = bgr[start:stop]
        green = cv2.extractChannel(strip, 1, dst=workspace.array("green", strip.shape[:2], np.uint8))
        other = workspace.array("channel", strip.shape[:2], np.uint8)
        for channel in (0, 2):
            if cv2.norm(cv2.extractChannel(strip, channel, dst=other), green, cv2.NORM_INF):
                return False
    return True


def lightness(bgr: np.ndarray) -> np.ndarray:
    """L channel (float32, [0, 100]) of a uint8 BGR image."""
    workspace = Workspace()
    return Lightness.of(bgr, workspace).rows(0, bgr.shape[0], workspace).copy()


# --- the join -------------------------------------------------------------------------


def join_lightness_and_ab(
    l_full: np.ndarray | Lightness,
    ab_small: np.ndarray,
    guided: bool = True,
    guide: np.ndarray | None = None,
    workspace: Workspace | None = None,
) -> np.ndarray:
    """Upsample predicted ab (h, w, 2) to the size of L (H, W) and return uint8 BGR (H, W, 3).

    The original full-resolution L is kept untouched: only chroma comes from the model.
    ``guided``: chroma edges follow L's edges (``ab_upsampling``); otherwise plain bilinear.
    ``guide``: L already area-averaged to the grid of ``ab_small``, when the caller has it.
    """
    workspace = workspace or Workspace()
    source = l_full if isinstance(l_full, Lightness) else Lightness.of_plane(l_full)
    height, width = source.shape
    grid_h, grid_w = ab_small.shape[:2]
    ab = ab_small.astype(np.float32, copy=False)
    if guided:
        if guide is None:
            (guide,) = source.area_resized([(grid_w, grid_h)], workspace)
        slope, offset = guided_coefficients(guide, ab)
    else:
        slope, offset = np.zeros_like(ab), ab
    # Lab = (1, slope) * L + (0, offset): L passes through, ab = slope * L + offset.
    ones, zeros = np.ones((grid_h, grid_w, 1), np.float32), np.zeros((grid_h, grid_w, 1), np.float32)
    grids = [np.concatenate([ones, slope], axis=2), np.concatenate([zeros, offset], axis=2)]
    upsampled = UpsampledRows(grids, height, width, workspace)
    out = np.empty((height, width, 3), np.uint8)
    for start, stop in row_strips(height, width):
        scale, lab = upsampled.rows(start, stop)
        cv2.accumulateProduct(scale, source.rows_thrice(start, stop, workspace), lab)
        cv2.cvtColor(lab, cv2.COLOR_Lab2BGR, dst=lab)
        _to_uint8(lab, out[start:stop])
    return out
