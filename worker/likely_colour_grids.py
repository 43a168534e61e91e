"""Which results keep the model's likely colours beside them, for the page's hint editor.

A single image colorized by a hint model (whose graph also outputs its bin probabilities) keeps,
per cell, the colours the network found most likely, given the hints it was given
(``shared.colour.likely_colours``). Other models do not: the extra pass would cost every
single image of the service (51 ms on a 1 MP photo, about as much as colorizing it) for a
page that may never ask. The page offers them where a person clicks to place a
hint. Archives do not: nobody places hints on a thousand photos one click at a time, and
the extra pass of the network would cost every one of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shared.colour.engine import Engine
from shared.colour.hints import Hint
from shared.colour.likely_colour_grid import LikelyColourGrid
from shared.colour.likely_colours import likely_colour_grid
from shared.jobs.records import Job


def keeps_likely_colours(job: Job, engine: Engine) -> bool:
    manifest = engine.manifest
    return job.source_kind == "image" and manifest.hints and manifest.probabilities_output is not None


def likely_colours_of(engine: Engine, job: Job, image: np.ndarray, hints: Sequence[Hint]) -> LikelyColourGrid | None:
    """The grid to keep beside this item's result; None where none is kept."""
    if not keeps_likely_colours(job, engine):
        return None
    return likely_colour_grid(engine, image, hints)
