"""The colours a hint model found most likely at each cell of a photo, kept beside its result.

When a hint model colorizes a single image, the worker keeps, for every cell of the network's
output grid, its most probable colours (``shared.colour.likely_colours`` computes them) as one
small JSON document; the page asks for those at the point a person clicks, to offer them as a
hint's colour. Reading one point needs no NumPy, so the API serves it as it is.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass

FORMAT = "colorize.likely-colours/1"


@dataclass(frozen=True)
class LikelyColour:
    color: str  # "#rrggbb", at the photo's lightness there
    share: float  # the network's probability of its bin, 0..1


@dataclass(frozen=True)
class LikelyColourGrid:
    """``colours[r * columns + c]``: a cell's colours, most probable first, with their ``shares``."""

    rows: int
    columns: int
    colours: list[list[str]]
    shares: list[list[float]]

    def at(self, x: float, y: float) -> list[LikelyColour]:
        """The colours of the cell holding (x, y), both in 0..1 of the photo as shown."""
        row = min(int(y * self.rows), self.rows - 1)
        column = min(int(x * self.columns), self.columns - 1)
        cell = row * self.columns + column
        return [LikelyColour(c, s) for c, s in zip(self.colours[cell], self.shares[cell], strict=True)]

    def to_bytes(self) -> bytes:
        """The document as kept: gzipped JSON, a tenth of its size, since neighbouring cells agree."""
        return gzip.compress(self.to_json(), compresslevel=6, mtime=0)

    @classmethod
    def from_bytes(cls, data: bytes) -> LikelyColourGrid:
        return cls.from_json(gzip.decompress(data))

    def to_json(self) -> bytes:
        document = {
            "format": FORMAT,
            "rows": self.rows,
            "columns": self.columns,
            "colours": self.colours,
            "shares": self.shares,
        }
        return json.dumps(document, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> LikelyColourGrid:
        document = json.loads(data)
        if document.get("format") != FORMAT:
            raise ValueError(f"not a likely-colours document of format {FORMAT}")
        grid = cls(int(document["rows"]), int(document["columns"]), document["colours"], document["shares"])
        if len(grid.colours) != grid.rows * grid.columns or len(grid.shares) != len(grid.colours):
            raise ValueError("a likely-colours document whose cells do not fill its grid")
        return grid
