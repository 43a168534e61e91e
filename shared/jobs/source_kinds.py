"""Which kind a job's source is: an uploaded image, zip, tar or tar.gz (told from its first
bytes), or images by reference. Naming its entries and results is :mod:`shared.jobs.entry_names`;
reading an archive's entries is the worker's (:mod:`worker.archive_entries`).
"""

from __future__ import annotations

import tarfile

from shared.errors import UnsupportedMediaType
from shared.imaging.formats import sniff_image_format

# "reference": images named by a job's source by reference (shared/storage/sources.py), not sent.
REFERENCE_KIND = "reference"
SOURCE_KINDS: tuple[str, ...] = ("zip", "tar", "tar.gz", "image", REFERENCE_KIND)
ARCHIVE_KINDS: tuple[str, ...] = ("zip", "tar", "tar.gz")


def detect_source_kind(head: bytes, filename: str | None = None) -> str:
    """``"zip"``, ``"tar"``, ``"tar.gz"`` or ``"image"`` from the first bytes of an upload.

    Give at least the first 512 bytes (a tar is recognised by its first header block).
    Magic bytes decide; the filename only helps when none match: a ``.zip`` name then
    selects zip, because zip readers find the directory at the end of the file (prefixed
    or self-extracting zips). Anything else raises ``UnsupportedMediaType``.
    """
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return "zip"
    if head[:2] == b"\x1f\x8b":
        return "tar.gz"
    # Before images: a tar starts with its first member's name, which may look like magic
    # bytes ("BM..." reads as a BMP signature).
    if is_tar_header(head[: tarfile.BLOCKSIZE]):
        return "tar"
    if sniff_image_format(head) is not None:
        return "image"
    if filename is not None and filename.lower().endswith(".zip"):
        return "zip"
    raise UnsupportedMediaType(
        "upload is neither a supported image (JPEG, PNG, BMP, TIFF, WebP, GIF) nor a zip, tar or tar.gz archive"
    )


def is_tar_header(block: bytes) -> bool:
    """Whether ``block`` is a tar header with a valid checksum (old V7 tars have no magic)."""
    if len(block) < tarfile.BLOCKSIZE:
        return False
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True
