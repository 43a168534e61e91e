"""What a chunk holds of each item on its way through :mod:`worker.chunk_pipeline`: its bytes
and decoded image, its colorized image, and its outcome once its result is stored."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.colour.hints import Hint
from shared.colour.likely_colour_grid import LikelyColourGrid
from shared.errors import ColorizeError
from shared.imaging.decoding import DecodeCost
from shared.imaging.metadata import NO_METADATA, SourceMetadata
from shared.jobs.records import ItemResult, Job


@dataclass
class LoadedItem:
    """An item on its way: its bytes and what decoding them takes, then its image and the
    metadata its result carries over; or its error."""

    index: int
    data: bytes | None = None
    cost: DecodeCost | None = None
    image: np.ndarray | None = None
    metadata: SourceMetadata = NO_METADATA
    error: ColorizeError | None = None

    def decoded(self) -> np.ndarray:
        """The image of an item that has been decoded."""
        if self.image is None:
            raise ValueError(f"item {self.index} has not been decoded")
        return self.image


@dataclass(frozen=True)
class ColorizedItem:
    index: int
    image: np.ndarray
    metadata: SourceMetadata
    likely_colours: LikelyColourGrid | None = None  # kept beside the result (worker.likely_colour_grids)


@dataclass(frozen=True)
class SavedItem:
    """An item's outcome, and the bytes its result added to the store."""

    outcome: ItemResult
    stored_bytes: int = 0


def item_hints(job: Job, index: int) -> tuple[Hint, ...]:
    """The colour hints of one item: a job with hints is a single image, item 0. They are
    relative to the image after its EXIF orientation, which is how the decoder hands it over."""
    return job.hints if index == 0 else ()
