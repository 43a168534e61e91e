"""The metadata a result carries over from its input: EXIF, IPTC, XMP and the ICC profile.

``read_metadata`` reads them with Pillow from the header of the input (no pixel is decoded),
before the worker lets go of the input's bytes; what it keeps is small and bounded
(``MAX_BLOCK_BYTES`` each). The decoder has already turned the pixels as the EXIF orientation
says, so the orientation kept is 1: in the EXIF (patched in place; its thumbnail, of the
black-and-white original, is unlinked) and in the XMP (``tiff:Orientation``). An XMP packet is
kept as ``shared.imaging.xmp`` parses it, or not at all. ``shared.imaging.metadata_embedding``
writes what the result's format can hold.

Where each comes from: the ICC profile, EXIF and XMP from JPEG, PNG, WebP and TIFF (a TIFF's
descriptive tags and EXIF and GPS sub-IFDs, its layout tags left behind); IPTC (IIM records)
from a JPEG's Photoshop APP13 segment and from TIFF's IPTC tag.
"""

from __future__ import annotations

import io
import logging
import struct
from dataclasses import dataclass
from typing import Any

from PIL import Image, TiffImagePlugin

from shared.imaging.formats import sniff_image_format
from shared.imaging.png_chunks import readable_png
from shared.imaging.xmp import packet, parse_xmp

log = logging.getLogger(__name__)

# A block larger than this is dropped rather than held beside a batch of images: real ICC
# profiles, EXIF and XMP packets are kilobytes, rarely more than a few hundred.
MAX_BLOCK_BYTES = 1024**2

_PHOTOSHOP_IPTC_RESOURCE = 0x0404
_TIFF_IPTC_TAG = 33723
_TIFF_XMP_TAG = 700
_EXIF_ORIENTATION_TAG = 0x0112
_EXIF_IFD_POINTER, _GPS_IFD_POINTER = 0x8769, 0x8825
# ImageDescription, Make, Model, Software, DateTime, Artist, Copyright.
_TIFF_DESCRIPTIVE_TAGS = (0x010E, 0x010F, 0x0110, 0x0131, 0x0132, 0x013B, 0x8298)
_TIFF_SHORT = 3
_XMP_ORIENTATION = "{http://ns.adobe.com/tiff/1.0/}Orientation"


@dataclass(frozen=True)
class SourceMetadata:
    """The input's metadata to carry over; each block is None when the input has none."""

    icc_profile: bytes | None = None
    exif: bytes | None = None  # a TIFF structure ("II*\0" or "MM\0*"...), orientation 1
    xmp: bytes | None = None  # an XMP packet (UTF-8 XML), as shared.imaging.xmp writes one
    iptc: bytes | None = None  # IPTC IIM records (0x1C ...)

    @property
    def size(self) -> int:
        return sum(len(block) for block in (self.icc_profile, self.exif, self.xmp, self.iptc) if block)


NO_METADATA = SourceMetadata()


def read_metadata(data: bytes) -> SourceMetadata:
    """The metadata of the image in ``data``; unreadable metadata counts as absent: it must
    never fail an image whose pixels are fine."""
    fmt = sniff_image_format(data[:16])
    if fmt is None:
        return NO_METADATA
    if fmt == "PNG":
        data, left_out = readable_png(data)
        for why in left_out:
            log.warning("a metadata chunk of the image is not carried over: %s", why)
    try:
        # The decoder's format only, as shared.imaging.decoding opens it: the bytes are not read as anything else.
        with Image.open(io.BytesIO(data), formats=[fmt]) as img:
            return SourceMetadata(
                icc_profile=_bounded("ICC profile", _bytes(img.info.get("icc_profile"))),
                exif=_bounded("EXIF", _exif(img)),
                xmp=_xmp(img),
                iptc=_bounded("IPTC", _iptc(img)),
            )
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow signals malformed metadata with many exception types
        log.warning("the image's metadata could not be read (%r); the result carries none", exc)
        return NO_METADATA


def normalised_exif(exif: bytes) -> bytes:
    """``exif`` (a TIFF structure) with its orientation set to 1 and its thumbnail unlinked: a
    small copy of the black-and-white original, turned by the old orientation, would misrepresent
    the result. Only the orientation's value and the link to the thumbnail's IFD change, in place:
    offsets, maker notes and sub-IFDs stay valid. Returned as it is when it is not a TIFF structure."""
    if len(exif) < 8 or exif[:4] not in (b"II*\x00", b"MM\x00*"):
        return exif
    order = "<" if exif[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(order + "I", exif, 4)
    if ifd + 2 > len(exif):
        return exif
    (count,) = struct.unpack_from(order + "H", exif, ifd)
    patched = bytearray(exif)
    end = ifd + 2 + 12 * count
    for entry in range(ifd + 2, min(end, len(exif) - 11), 12):
        tag, kind, number = struct.unpack_from(order + "HHI", exif, entry)
        if tag == _EXIF_ORIENTATION_TAG and kind == _TIFF_SHORT and number == 1:
            struct.pack_into(order + "H", patched, entry + 8, 1)
    if end + 4 <= len(exif):
        struct.pack_into(order + "I", patched, end, 0)  # no IFD after the first: no thumbnail
    return bytes(patched)


def normalised_xmp(xmp: bytes) -> bytes | None:
    """``xmp`` as parsed, with any ``tiff:Orientation`` set to 1; None when it does not parse."""
    document = parse_xmp(xmp)
    if document is None:
        return None
    document.set_value(_XMP_ORIENTATION, "1")
    return packet(document)


def _exif(img: Image.Image) -> bytes | None:
    if isinstance(img, TiffImagePlugin.TiffImageFile):
        return _tiff_exif(img)
    raw = _bytes(img.info.get("exif"))
    if raw is None:
        return None
    if raw.startswith(b"Exif\x00\x00"):  # JPEG's APP1 identifier, which Pillow leaves on
        raw = raw[6:]
    return normalised_exif(raw)


def _tiff_exif(img: TiffImagePlugin.TiffImageFile) -> bytes | None:
    """A TIFF's EXIF is its own first IFD, layout tags and all: only what describes the picture
    is carried over, as a fresh EXIF block (without an orientation: libtiff has applied it)."""
    tags = img.getexif()
    exif = Image.Exif()
    for tag in _TIFF_DESCRIPTIVE_TAGS:
        if tag in tags:
            exif[tag] = tags[tag]
    for pointer in (_EXIF_IFD_POINTER, _GPS_IFD_POINTER):
        if entries := tags.get_ifd(pointer):
            exif.get_ifd(pointer).update(entries)
    if not len(exif) and not any(exif.get_ifd(pointer) for pointer in (_EXIF_IFD_POINTER, _GPS_IFD_POINTER)):
        return None
    block: bytes = exif.tobytes()
    return block.removeprefix(b"Exif\x00\x00")


def _xmp(img: Image.Image) -> bytes | None:
    raw: Any = img.info.get("xmp") or img.info.get("XML:com.adobe.xmp")
    if raw is None and isinstance(img, TiffImagePlugin.TiffImageFile):
        raw = img.tag_v2.get(_TIFF_XMP_TAG)
    block = _bounded("XMP", _bytes(raw))  # before it is parsed
    return _bounded("XMP", normalised_xmp(block)) if block else None


def _iptc(img: Image.Image) -> bytes | None:
    if img.format in ("JPEG", "MPO"):
        resources = img.info.get("photoshop")
        return _bytes(resources.get(_PHOTOSHOP_IPTC_RESOURCE)) if isinstance(resources, dict) else None
    if isinstance(img, TiffImagePlugin.TiffImageFile):
        return _bytes(img.tag_v2.get(_TIFF_IPTC_TAG))
    return None


def _bytes(value: Any) -> bytes | None:
    """A metadata block as bytes, whichever way Pillow hands it over; None when empty."""
    if isinstance(value, str):
        value = value.encode()
    elif isinstance(value, (tuple, list)) and all(isinstance(v, int) and 0 <= v < 256 for v in value):
        value = bytes(value)
    return bytes(value) if isinstance(value, (bytes, bytearray)) and value else None


def _bounded(kind: str, block: bytes | None) -> bytes | None:
    if block is not None and len(block) > MAX_BLOCK_BYTES:
        log.warning("the image's %s of %d bytes is not carried over (at most %d)", kind, len(block), MAX_BLOCK_BYTES)
        return None
    return block
