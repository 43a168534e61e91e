"""The shapes of ``GET /v1/jobs/{id}/items/{n}/likely-colours``: a point of the photo in, the
colours the model found most likely there out (``shared.colour.likely_colour_grid``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from api.schemas import RequestBody
from shared.jobs.documents import Document


class LikelyColoursQuery(RequestBody):
    x: float = Field(ge=0.0, le=1.0, description="From the photo's left edge (0) to its right (1), as shown.")
    y: float = Field(ge=0.0, le=1.0, description="From the photo's top edge (0) to its bottom (1), as shown.")

    field_messages: ClassVar[dict[str, str]] = {
        "x": "'x' must be a number from 0 to 1 (the point across the photo)",
        "y": "'y' must be a number from 0 to 1 (the point down the photo)",
    }


class LikelyColour(Document):
    color: str = Field(pattern=r"^#[0-9a-f]{6}$", description="The colour at the photo's lightness there.")
    share: float = Field(ge=0.0, le=1.0, description="How probable the network found it.")


class LikelyColours(Document):
    x: float
    y: float
    colors: list[LikelyColour] = Field(description="Most probable first, as given the job's hints.")
