"""Metadata written into an encoded result: each container's own blocks, spliced in.

OpenCV encodes the results (fast, and from the BGR array as it is: no converted copy) but
writes no metadata, and Pillow cannot write IPTC into a JPEG at all; so the blocks are
inserted into the encoded bytes here, as each format's specification lays them out:

* JPEG: after SOI and the JFIF APP0, APP1 ``Exif``, APP1 XMP (``http://ns.adobe.com/xap/1.0/``),
  APP2 ``ICC_PROFILE`` (in chunks of at most 65519 bytes) and APP13 ``Photoshop 3.0`` with one
  IPTC-NAA resource (0x0404). A segment holds at most 65533 bytes: an EXIF or IPTC block
  larger than that is left out, and an XMP packet larger than that is replaced by one with
  the provenance alone (extended XMP is not written).
* PNG: after IHDR, ``iCCP`` (deflated), ``eXIf`` and an ``iTXt`` keyed ``XML:com.adobe.xmp``.
  PNG has no IPTC chunk: IPTC is left out (its fields usually repeat in the XMP).
* WebP: the simple file becomes an extended one: ``VP8X`` (with the canvas size and the
  flags of what follows), ``ICCP``, the image, ``EXIF``, ``XMP``. WebP has no IPTC chunk either.

Every result gets an XMP packet: the input's, if any, with the provenance added
(``shared.imaging.provenance``).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

from shared.imaging.metadata import SourceMetadata
from shared.imaging.output_options import OutputFormat
from shared.imaging.provenance import Provenance, provenance_only, xmp_with_provenance

MAX_SEGMENT_DATA = 65533  # a JPEG segment's length field counts itself: 0xFFFF - 2
EXIF_ID = b"Exif\x00\x00"
XMP_ID = b"http://ns.adobe.com/xap/1.0/\x00"
ICC_ID = b"ICC_PROFILE\x00"
PHOTOSHOP_ID = b"Photoshop 3.0\x00"
ICC_CHUNK = MAX_SEGMENT_DATA - len(ICC_ID) - 2
_APP0, _APP1, _APP2, _APP13 = 0xE0, 0xE1, 0xE2, 0xED
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_WEBP_ICC, _WEBP_EXIF, _WEBP_XMP = 0x20, 0x08, 0x04
_Data = bytes | memoryview


def embed_metadata(
    fmt: OutputFormat, encoded: memoryview, size: tuple[int, int], metadata: SourceMetadata, provenance: Provenance
) -> bytes:
    """``encoded`` (as OpenCV writes ``fmt``, ``size`` = (width, height)) with ``metadata`` and
    the provenance XMP inserted. The encoded image is copied once, into the bytes returned."""
    xmp = xmp_with_provenance(metadata.xmp, provenance)
    if fmt == OutputFormat.JPEG:
        return _jpeg(encoded, metadata, xmp, provenance)
    if fmt == OutputFormat.PNG:
        return _png(encoded, metadata, xmp)
    return _webp(encoded, size, metadata, xmp)


# --- JPEG -----------------------------------------------------------------------------------


def _jpeg(encoded: memoryview, metadata: SourceMetadata, xmp: bytes, provenance: Provenance) -> bytes:
    if bytes(encoded[:2]) != b"\xff\xd8":
        raise ValueError("not a JPEG: no SOI marker")
    at = 2
    while bytes(encoded[at : at + 2]) == bytes((0xFF, _APP0)):  # the encoder's JFIF header stays first
        at += 2 + int.from_bytes(encoded[at + 2 : at + 4], "big")
    if len(XMP_ID) + len(xmp) > MAX_SEGMENT_DATA:
        xmp = provenance_only(provenance)
    segments = list(_jpeg_segments(metadata, xmp))
    return b"".join([encoded[:at], *segments, encoded[at:]])


def _jpeg_segments(metadata: SourceMetadata, xmp: bytes) -> Iterator[bytes]:
    if metadata.exif and len(EXIF_ID) + len(metadata.exif) <= MAX_SEGMENT_DATA:
        yield _segment(_APP1, EXIF_ID + metadata.exif)
    yield _segment(_APP1, XMP_ID + xmp)
    if metadata.icc_profile:
        chunks = [metadata.icc_profile[i : i + ICC_CHUNK] for i in range(0, len(metadata.icc_profile), ICC_CHUNK)]
        if len(chunks) <= 255:  # the chunk count is one byte
            for number, chunk in enumerate(chunks, 1):
                yield _segment(_APP2, ICC_ID + bytes((number, len(chunks))) + chunk)
    if metadata.iptc:
        resource = _photoshop_resource(0x0404, metadata.iptc)
        if len(PHOTOSHOP_ID) + len(resource) <= MAX_SEGMENT_DATA:
            yield _segment(_APP13, PHOTOSHOP_ID + resource)


def _segment(marker: int, data: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(data) + 2) + data


def _photoshop_resource(resource_id: int, data: bytes) -> bytes:
    """An image resource block: ``8BIM``, its id, an empty name (padded to even), its size, its
    data padded to even."""
    padding = b"\x00" * (len(data) % 2)
    return b"8BIM" + struct.pack(">H", resource_id) + b"\x00\x00" + struct.pack(">I", len(data)) + data + padding


# --- PNG ------------------------------------------------------------------------------------


def _png(encoded: memoryview, metadata: SourceMetadata, xmp: bytes) -> bytes:
    if bytes(encoded[:8]) != _PNG_SIGNATURE:
        raise ValueError("not a PNG: no signature")
    ihdr_end = len(_PNG_SIGNATURE) + 8 + int.from_bytes(encoded[8:12], "big") + 4
    chunks = []
    if metadata.icc_profile:
        chunks.append(_png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(metadata.icc_profile)))
    if metadata.exif:
        chunks.append(_png_chunk(b"eXIf", metadata.exif))
    # iTXt: keyword, no compression (flag, method), no language tag, no translated keyword.
    chunks.append(_png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp))
    return b"".join([encoded[:ihdr_end], *chunks, encoded[ihdr_end:]])


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


# --- WebP -----------------------------------------------------------------------------------


def _webp(encoded: memoryview, size: tuple[int, int], metadata: SourceMetadata, xmp: bytes) -> bytes:
    if bytes(encoded[:4]) != b"RIFF" or bytes(encoded[8:12]) != b"WEBP":
        raise ValueError("not a WebP: no RIFF WEBP header")
    image = [(kind, data) for kind, data in _riff_chunks(encoded) if kind in (b"VP8 ", b"VP8L", b"ALPH")]
    flags = _WEBP_XMP
    before: list[tuple[bytes, _Data]] = []
    after: list[tuple[bytes, _Data]] = [(b"XMP ", xmp)]
    if metadata.icc_profile:
        flags |= _WEBP_ICC
        before.append((b"ICCP", metadata.icc_profile))
    if metadata.exif:
        flags |= _WEBP_EXIF
        after.insert(0, (b"EXIF", metadata.exif))
    width, height = size
    header = bytes((flags, 0, 0, 0)) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    chunks = [(b"VP8X", header), *before, *image, *after]
    parts = [part for kind, data in chunks for part in _riff_chunk(kind, data)]
    length = 4 + sum(len(part) for part in parts)
    return b"".join([b"RIFF", struct.pack("<I", length), b"WEBP", *parts])


def _riff_chunks(encoded: memoryview) -> Iterator[tuple[bytes, _Data]]:
    at = 12
    while at + 8 <= len(encoded):
        kind, length = bytes(encoded[at : at + 4]), int.from_bytes(encoded[at + 4 : at + 8], "little")
        yield kind, encoded[at + 8 : at + 8 + length]
        at += 8 + length + (length % 2)


def _riff_chunk(kind: bytes, data: _Data) -> list[_Data]:
    """The chunk's parts, the data not copied."""
    return [kind + struct.pack("<I", len(data)), data, b"\x00" * (len(data) % 2)]
