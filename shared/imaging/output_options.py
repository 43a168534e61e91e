"""How a job's results are written: the image format, its quality, the longest side allowed.

A job asks for them when it is created (``format``, ``quality``, ``max_side``); they are
checked here, stored with the job and shown in its document, and the worker encodes every
result by them (``shared.imaging.encoding``). The format decides the result's extension (in
the object key and in ``output_path``, hence in results.zip) and its Content-Type.

Jobs recorded before these options existed have none stored and read as JPEG at the
server's ``jpeg_quality``, at full size, which is what they were promised.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from shared.errors import InvalidRequest
from shared.settings import Settings


class OutputFormat(StrEnum):
    JPEG = "jpeg"
    PNG = "png"
    WEBP = "webp"


EXTENSIONS: dict[OutputFormat, str] = {OutputFormat.JPEG: ".jpg", OutputFormat.PNG: ".png", OutputFormat.WEBP: ".webp"}
CONTENT_TYPES: dict[OutputFormat, str] = {
    OutputFormat.JPEG: "image/jpeg",
    OutputFormat.PNG: "image/png",
    OutputFormat.WEBP: "image/webp",
}
# Formats whose encoder takes a quality (lossy); PNG is lossless.
LOSSY_FORMATS = frozenset({OutputFormat.JPEG, OutputFormat.WEBP})
MIN_QUALITY, MAX_QUALITY = 1, 100
# The WebP bitstream stores each side in 14 bits: a larger result is scaled down to fit.
WEBP_MAX_SIDE = 16383


@dataclass(frozen=True)
class OutputOptions:
    """``quality``: None for PNG, and for JPEG or WebP the server's ``jpeg_quality``.
    ``max_side``: None keeps the colorized image at the size of its input."""

    format: OutputFormat = OutputFormat.JPEG
    quality: int | None = None
    max_side: int | None = None

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]

    def quality_or(self, default: int) -> int:
        return default if self.quality is None else self.quality

    def longest_side(self) -> int | None:
        """The longest side a result may have: the job's ``max_side`` and the format's own limit."""
        if self.format == OutputFormat.WEBP:
            return min(self.max_side or WEBP_MAX_SIDE, WEBP_MAX_SIDE)
        return self.max_side

    def record_fields(self) -> dict[str, str]:
        """The options as fields of the job's record (``from_record`` reads them back)."""
        return {
            "output_format": self.format.value,
            "output_quality": "" if self.quality is None else str(self.quality),
            "output_max_side": "" if self.max_side is None else str(self.max_side),
        }

    @classmethod
    def from_record(cls, fields: Mapping[str, str]) -> OutputOptions:
        quality, max_side = fields.get("output_quality", ""), fields.get("output_max_side", "")
        return cls(
            format=OutputFormat(fields.get("output_format") or OutputFormat.JPEG),
            quality=int(quality) if quality else None,
            max_side=int(max_side) if max_side else None,
        )


# What a job that names no options gets, and jobs recorded before they existed.
DEFAULT_OUTPUT = OutputOptions()


def requested_output(
    settings: Settings, format: str | None = None, quality: int | None = None, max_side: int | None = None
) -> OutputOptions:
    """The options a job request asks for, checked against the server's limits; what it leaves
    out: JPEG, the server's quality, full size. InvalidRequest says what is wrong."""
    try:
        chosen = OutputFormat(format or OutputFormat.JPEG)
    except ValueError:
        allowed = ", ".join(f.value for f in OutputFormat)
        raise InvalidRequest(f"'format' must be one of {allowed}", field="format") from None
    if quality is not None:
        if chosen not in LOSSY_FORMATS:
            raise InvalidRequest(f"'quality' applies to jpeg and webp only, not {chosen.value}", field="quality")
        if isinstance(quality, bool) or not MIN_QUALITY <= quality <= MAX_QUALITY:
            raise InvalidRequest(
                f"'quality' must be between {MIN_QUALITY} and {MAX_QUALITY}",
                field="quality",
                minimum=MIN_QUALITY,
                maximum=MAX_QUALITY,
            )
    if max_side is not None:
        limit = settings.limits.max_side
        if isinstance(max_side, bool) or not 1 <= max_side <= limit:
            raise InvalidRequest(
                f"'max_side' must be between 1 and {limit} (the longest side an image may have)",
                field="max_side",
                minimum=1,
                maximum=limit,
            )
    if chosen in LOSSY_FORMATS and quality is None:
        quality = settings.jpeg_quality
    return OutputOptions(chosen, quality, max_side)
