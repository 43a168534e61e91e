"""What a chunk holds of each item on its way through :mod:`worker.chunk_pipeline`: its bytes
and decoded image, its colorized image, and its outcome once its result is stored."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from shared.colour.hints import Hint
from shared.colour.likely_colour_grid import LikelyColourGrid
from shared.colour.model_manifests import load_manifest
from shared.errors import ColorizeError
from shared.imaging.decoding import DecodeCost
from shared.imaging.metadata import NO_METADATA, SourceMetadata
from shared.jobs.records import ItemResult, Job, NewItem
from shared.jobs.store import JobStore


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


def chunk_records(jobs: JobStore, job: Job, indices: Sequence[int], has_destination: bool) -> dict[int, NewItem]:
    """The chunk's items as registered, where it needs them: for their output paths in a
    destination, or for their hints (an archive's or a source's items, for a model that takes
    hints; a single image's are its job's). Otherwise none, and a round trip saved."""
    takes_hints = job.source_kind != "image" and load_manifest(jobs.settings.models_dir, job.model).hints
    return jobs.registered(job.id, indices) if has_destination or takes_hints else {}


def item_hints(job: Job, registered: NewItem | None, index: int) -> tuple[Hint, ...]:
    """The colour hints of one item: its record's (an archive's item, from the job's hint map),
    or for a single image, item 0, its job's. They are relative to the image after its EXIF
    orientation, which is how the decoder hands it over."""
    if registered is not None and registered.hints:
        return registered.hints
    return job.hints if index == 0 else ()
