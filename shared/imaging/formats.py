"""Which supported image format a file is, from its leading magic bytes alone.

Light on purpose (no OpenCV, numpy or Pillow): the API sniffs uploads with it
(``shared.jobs.source_kinds``) without loading the decoders; ``shared.imaging.decoding``
picks its decoder with the same signatures.
"""

from __future__ import annotations

# Leading bytes of each accepted format. The signatures are mutually exclusive, so Pillow
# (probe) and OpenCV (decode) always pick the same decoder for the same bytes.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
)

SUPPORTED_IMAGE_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "BMP", "TIFF", "WEBP", "GIF")


def sniff_image_format(head: bytes) -> str | None:
    """The supported image format whose magic bytes start ``head``, or None."""
    for signature, name in _SIGNATURES:
        if head.startswith(signature):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None
