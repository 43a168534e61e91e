"""Conversions between 8-bit sRGB (OpenCV's BGR order) and CIE Lab, and the L+ab join.

Lab values are floats: L in [0, 100], a and b roughly in [-128, 127] (D65, as OpenCV).
"""

from __future__ import annotations

import cv2
import numpy as np

from shared.ab_upsampling import guided_upsample_ab


def bgr_to_lab(bgr: np.ndarray) -> np.ndarray:
    """uint8 BGR (H, W, 3) -> float32 Lab (H, W, 3)."""
    return cv2.cvtColor(bgr.astype(np.float32) * np.float32(1 / 255), cv2.COLOR_BGR2Lab)


def lab_to_bgr(lab: np.ndarray) -> np.ndarray:
    """float32 Lab (H, W, 3) -> uint8 BGR, out-of-gamut colours clipped."""
    bgr = cv2.cvtColor(lab.astype(np.float32, copy=False), cv2.COLOR_Lab2BGR)
    # OpenCV's saturating cast rounds and clips in one pass (three times faster than NumPy).
    return cv2.multiply(bgr, (255.0, 255.0, 255.0, 0.0), dtype=cv2.CV_8U)


def lightness(bgr: np.ndarray) -> np.ndarray:
    """L channel (float32, [0, 100]) of a uint8 BGR image."""
    return bgr_to_lab(bgr)[..., 0]


def join_lightness_and_ab(l_full: np.ndarray, ab_small: np.ndarray, guided: bool = True) -> np.ndarray:
    """Upsample predicted ab (h, w, 2) to the size of L (H, W) and return uint8 BGR.

    The original full-resolution L is kept untouched: only chroma comes from the model.
    ``guided``: chroma edges follow L's edges (``ab_upsampling``); otherwise plain bilinear.
    """
    height, width = l_full.shape
    l_full = l_full.astype(np.float32, copy=False)
    if guided:
        ab = guided_upsample_ab(l_full, ab_small)
    else:
        ab = cv2.resize(ab_small.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    lab = cv2.merge([l_full, ab[..., 0], ab[..., 1]])
    return lab_to_bgr(lab)
