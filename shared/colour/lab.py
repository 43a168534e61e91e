"""Conversions between 8-bit sRGB (OpenCV's BGR order) and CIE Lab, and the L + ab join.

Lab values are floats: L in [0, 100], a and b roughly in [-128, 127] (D65, as OpenCV).

OpenCV's float conversions are the reference. Full-resolution work takes cheaper routes to the
same numbers and never holds a whole image in float:

* L of a grey image (the usual input) is a table lookup of its grey level, read from the image
  itself as it is needed (:class:`Lightness`), and averaged to the model's input straight from
  the 8-bit pixels (:mod:`shared.colour.grey_lightness`); a colour image's L is computed from its
  8-bit pixels with OpenCV's own table (:mod:`shared.colour.colour_lightness`) and kept as 16-bit
  codes, read the same way;
* the join is one compiled pass (:mod:`shared.colour.lab_join`): ab upsampled, Lab to BGR, 8 bits,
  pixel by pixel, within one level of OpenCV's float conversion.

Row reads work in a :class:`Workspace`, buffers reused from image to image: fresh memory costs
a page fault every 4 KiB, on a busy machine more than the arithmetic.
"""

from __future__ import annotations

import cv2
import numpy as np

from shared.colour import colour_lightness, grey_lightness, lab_join
from shared.colour.ab_upsampling import guided_coefficients


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
    """Named buffers that row reads reuse; each grows to the largest size asked of it."""

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def array(self, name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        """A C-contiguous array of ``shape`` over buffer ``name`` (its contents are undefined)."""
        size = int(np.prod(shape))
        buffer = self._buffers.get(name)
        if buffer is None or buffer.size < size or buffer.dtype != dtype:
            buffer = self._buffers[name] = np.empty(size, dtype)
        return buffer[:size].reshape(shape)


# --- L -------------------------------------------------------------------------------


def _grey_lightness() -> np.ndarray:
    """L of each grey level, as OpenCV's float conversion computes it."""
    levels = cv2.cvtColor(np.arange(256, dtype=np.uint8)[None], cv2.COLOR_GRAY2BGR)
    return bgr_to_lab(levels)[0, :, 0].copy()


_GREY_LIGHTNESS = _grey_lightness()


class Lightness:
    """L of one image, read back as float32 rows.

    Integer codes read through a table of their L, or a float plane (4 bytes a pixel). A grey
    image is read from its own green channel through a table of the 256 grey levels' L, which
    needs no memory of its own; a colour image's L is held as OpenCV's 16-bit fixed point
    (``shared.colour.colour_lightness``), 2 bytes a pixel. (Colour L is OpenCV's to the bit, not the
    exact CIE formula: that differs from OpenCV's by up to 0.19 and moved results of colour
    validation photos by up to 5 levels.)
    """

    def __init__(self, plane: np.ndarray, table: np.ndarray | None = None, channel: int = 0) -> None:
        # (H, W) float32 L, or (H, W, C) integer codes whose channel ``channel`` reads through ``table``
        self.plane = plane
        self.table = table
        self.channel = channel

    @classmethod
    def of(cls, bgr: np.ndarray) -> Lightness:
        """L of a uint8 BGR image (H, W, 3), exactly as OpenCV's float conversion computes it."""
        if grey_lightness.is_grey(bgr):
            return cls(bgr, _GREY_LIGHTNESS, channel=1)
        codes = colour_lightness.lightness_codes(bgr)
        return cls(codes[..., None], colour_lightness.CODE_LIGHTNESS)

    @classmethod
    def of_plane(cls, l_full: np.ndarray) -> Lightness:
        """An L plane already computed (float, [0, 100])."""
        return cls(np.ascontiguousarray(l_full, dtype=np.float32))

    @property
    def shape(self) -> tuple[int, int]:
        return self.plane.shape[:2]

    def rows(self, start: int, stop: int, workspace: Workspace) -> np.ndarray:
        """float32 L of rows ``start:stop``, valid until the workspace's next ``rows``."""
        plane = self.plane[start:stop]
        if self.table is None:
            return plane
        out = workspace.array("l_rows", plane.shape[:2], np.float32)
        return np.take(self.table, plane[..., self.channel], out=out)

    def area_resized(self, sizes: list[tuple[int, int]], workspace: Workspace | None = None) -> list[np.ndarray]:
        """L resized to each (width, height) with ``cv2.INTER_AREA``'s weights. Codes shrinking
        both ways are averaged straight through their table (``shared.colour.grey_lightness``); other L
        is resized whole by OpenCV."""
        full_h, full_w = self.shape
        if self.table is not None and all(height <= full_h and width <= full_w for width, height in sizes):
            return [
                grey_lightness.area_averaged_lightness(self.plane, self.channel, self.table, size) for size in sizes
            ]
        l_full = self.rows(0, full_h, workspace or Workspace())
        return [cv2.resize(l_full, size, interpolation=cv2.INTER_AREA) for size in sizes]


def lightness(bgr: np.ndarray) -> np.ndarray:
    """L channel (float32, [0, 100]) of a uint8 BGR image."""
    workspace = Workspace()
    return Lightness.of(bgr).rows(0, bgr.shape[0], workspace).copy()


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
    out = np.empty((height, width, 3), np.uint8)
    return lab_join.join(source.plane, source.table, source.channel, slope, offset, out)


def warm_up() -> None:
    """Compile the join and the L kernels (or load them from numba's cache) and build the colour
    L table before the first image needs them (``shared.colour.compiled``)."""
    lab_join.warm_up()
    grey_lightness.warm_up()
    colour_lightness.warm_up()
