"""A colorized image written as its job asks (``shared.imaging.output_options``), with its input's
metadata and the provenance (``shared.imaging.metadata_embedding``).

A result larger than the job's ``max_side`` (or, for WebP, than the format allows) is scaled
down, keeping its aspect, by area averaging; a smaller one is never scaled up. OpenCV
encodes: JPEG baseline with 4:2:0 chroma subsampling (``shared.imaging.decoding.encode_jpeg``), PNG at
compression level ``PNG_COMPRESSION``, WebP lossy at the job's quality.
"""

from __future__ import annotations

import cv2
import numpy as np

from shared.imaging.decoding import jpeg_params
from shared.imaging.metadata import SourceMetadata
from shared.imaging.metadata_embedding import embed_metadata
from shared.imaging.output_options import OutputFormat, OutputOptions
from shared.imaging.provenance import Provenance

# zlib level: 3 writes photos within a few percent of level 9's size in a fraction of its time.
PNG_COMPRESSION = 3


def encode_result(
    bgr: np.ndarray, options: OutputOptions, default_quality: int, metadata: SourceMetadata, provenance: Provenance
) -> bytes:
    """``bgr`` (uint8, H x W x 3) as the result file; ``default_quality`` where the job names none."""
    if bgr.dtype != np.uint8 or bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ValueError(f"expected uint8 BGR (H, W, 3), got {bgr.dtype} {bgr.shape}")
    image = scaled_to_fit(bgr, options.longest_side())
    quality = options.quality_or(default_quality)
    extension, params = _encoder(options.format, quality)
    ok, buffer = cv2.imencode(extension, image, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} image as {options.format}")
    height, width = image.shape[:2]
    del image  # the scaled copy, before the result is joined
    return embed_metadata(options.format, buffer.data, (width, height), metadata, provenance)


def fitted_size(width: int, height: int, longest_side: int | None) -> tuple[int, int]:
    """(width, height) scaled down so that neither exceeds ``longest_side``, aspect kept; as
    they are when they fit (or ``longest_side`` is None)."""
    if longest_side is None or max(width, height) <= longest_side:
        return width, height
    scale = longest_side / max(width, height)
    return max(1, min(longest_side, round(width * scale))), max(1, min(longest_side, round(height * scale)))


def scaled_to_fit(bgr: np.ndarray, longest_side: int | None) -> np.ndarray:
    height, width = bgr.shape[:2]
    size = fitted_size(width, height, longest_side)
    if size == (width, height):
        return bgr
    return cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)


def _encoder(fmt: OutputFormat, quality: int) -> tuple[str, list[int]]:
    if fmt == OutputFormat.JPEG:
        return ".jpg", jpeg_params(quality)
    if fmt == OutputFormat.PNG:
        return ".png", [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION]
    return ".webp", [cv2.IMWRITE_WEBP_QUALITY, quality]
