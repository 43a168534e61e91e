"""Colour hints: points where the person who knows the photo says what colour it was.

A hint model (``ModelManifest.hints``) takes two more inputs beside L, on its square input
grid: ``hint_ab`` (2, S, S), the hinted a and b where there is a hint and 0 elsewhere, and
``hint_mask`` (1, S, S), 1 at hinted cells. The photo is stretched to that square grid, so a
point at (x, y) of the photo is at (x * S, y * S) on the grid whatever its shape.

Hints arrive already validated (:mod:`shared.colour.hint_rules`, for the API and the
expander). This module is what a hint is, light enough for the API to import;
:mod:`shared.colour.hint_planes` turns valid hints into the planes the network reads.
"""

from __future__ import annotations

from dataclasses import dataclass

# The most hints one image may carry: far more than a person places, few enough that the
# planes stay cheap to draw.
MAX_HINTS = 64
# Largest radius, as a fraction of the photo's longer side.
MAX_RADIUS = 0.25


@dataclass(frozen=True)
class Hint:
    """One point: ``x``, ``y`` in 0..1 of the photo as uploaded after its EXIF orientation
    (x to the right, y down), ``color`` as ``#rrggbb``, ``radius`` a fraction of the photo's
    longer side (0 < r <= MAX_RADIUS), or None for one cell of the model's input grid."""

    x: float
    y: float
    color: str
    radius: float | None = None
