"""The 313 quantized ab colour bins of Zhang et al. (grid step 10, inside the colour gamut).

Stored as one row per ``a`` value with its contiguous ``b`` range: the full set, ordered by
``a`` then ``b``, is the order the released ECCV16 weights expect for their 313 outputs.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

GRID_STEP = 10
NUM_BINS = 313

# a: (lowest b, highest b), both inclusive, in steps of GRID_STEP.
_B_RANGE_BY_A = {
    -90: (50, 90),
    -80: (20, 90),
    -70: (0, 90),
    -60: (-20, 90),
    -50: (-30, 100),
    -40: (-40, 100),
    -30: (-50, 100),
    -20: (-50, 100),
    -10: (-60, 100),
    0: (-70, 100),
    10: (-80, 90),
    20: (-80, 90),
    30: (-90, 90),
    40: (-100, 90),
    50: (-100, 80),
    60: (-110, 80),
    70: (-110, 80),
    80: (-110, 70),
    90: (-110, 70),
    100: (-90, 0),
}


@lru_cache(maxsize=1)
def ab_bins() -> np.ndarray:
    """Bin centres as a read-only (313, 2) float32 array of (a, b)."""
    rows = [(a, b) for a, (b_low, b_high) in sorted(_B_RANGE_BY_A.items()) for b in range(b_low, b_high + 1, GRID_STEP)]
    bins = np.asarray(rows, dtype=np.float32)
    assert bins.shape == (NUM_BINS, 2)
    bins.setflags(write=False)
    return bins


def grid_index(ab: np.ndarray) -> np.ndarray:
    """Index on the full step-10 grid (a and b in [-110, 110]) of each ab value, shape (...)."""
    cells = np.clip(np.round(np.asarray(ab) / GRID_STEP), -11, 11).astype(np.int64) + 11
    return cells[..., 0] * 23 + cells[..., 1]
