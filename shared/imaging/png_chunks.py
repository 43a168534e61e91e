"""A PNG's header as Pillow reads it without failing the image over its metadata.

Pillow reads every chunk before the image data when it opens a PNG, and refuses the whole
file (an exception, so ``corrupt_image``) over metadata it cannot take: a text or ICC chunk
that inflates past ``PngImagePlugin.MAX_TEXT_CHUNK`` (1 MiB) or does not inflate, text
chunks that add up past ``MAX_TEXT_MEMORY``, an unknown compression method, an ancillary
chunk whose checksum is wrong. OpenCV, which decodes the pixels, skips such chunks. So
``readable_png`` hands Pillow the file without them, along with a note of each metadata
block left out; the pixels are decoded from the file as it is.

What is checked, of the chunks before the first ``IDAT``: every ancillary chunk's checksum;
the first ``iCCP`` and the first XMP text chunk (keyword ``XML:com.adobe.xmp``), inflated up to
the limit at most (an uncompressed XMP packet may not exceed it either); later ones are left out. Other compressed text (``zTXt``, compressed ``iTXt``)
is left out unread: nothing is carried over from it. The cost is one pass over the chunks'
headers and checksums and at most two bounded inflations, whatever the file holds.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from PIL import PngImagePlugin

_SIGNATURE_BYTES = 8
_XMP_KEYWORD = b"XML:com.adobe.xmp"
_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")


@dataclass
class _Reading:
    """What the chunks seen so far have taken."""

    icc_profile: bool = False
    xmp: bool = False
    text_bytes: int = 0
    notes: list[str] = field(default_factory=list)


def readable_png(data: bytes) -> tuple[bytes, list[str]]:
    """``data`` (a PNG) without the chunks that would make Pillow refuse it, and a note of each
    metadata block left out, saying why; ``data`` itself when there are none."""
    reading = _Reading()
    kept: list[memoryview] = []
    view = memoryview(data)
    at = _SIGNATURE_BYTES
    dropped = False
    while at + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, at)
        end = at + 12 + length
        if kind in (b"IDAT", b"IEND") or end > len(data):
            break  # the header ends here; the rest is Pillow's and OpenCV's to judge
        chunk = view[at:end]
        if _keep(kind, chunk, reading):
            kept.append(chunk)
        else:
            dropped = True
        at = end
    if not dropped:
        return data, reading.notes
    return b"".join([view[:_SIGNATURE_BYTES], *kept, view[at:]]), reading.notes


def _keep(kind: bytes, chunk: memoryview, reading: _Reading) -> bool:
    ancillary = bool(kind[0] & 0x20)
    if ancillary and zlib.crc32(chunk[8:-4], zlib.crc32(kind)) != struct.unpack(">I", chunk[-4:])[0]:
        reading.notes.append(f"the checksum of the {_name(kind, chunk[8:-4])} is wrong")
        return False
    if kind == b"iCCP":
        return _keep_icc_profile(bytes(chunk[8:-4]), reading)
    if kind in _TEXT_CHUNKS:
        return _keep_text(kind, bytes(chunk[8:-4]), reading)
    return True


def _keep_icc_profile(body: bytes, reading: _Reading) -> bool:
    block = "ICC profile (iCCP chunk)"
    if reading.icc_profile:
        reading.notes.append(f"a second {block} follows the first")
        return False
    reading.icc_profile = True
    name_end = body.find(b"\x00", 0, 80)
    if name_end < 0 or name_end + 1 >= len(body) or body[name_end + 1] != 0:
        reading.notes.append(f"the {block} is malformed")
        return False
    return _inflates_within_limit(block, body, name_end + 2, reading)


def _keep_text(kind: bytes, body: bytes, reading: _Reading) -> bool:
    keyword_end = body.find(b"\x00", 0, 80)
    text_at = _text_start(kind, body, keyword_end)
    compressed = kind == b"zTXt" or (kind == b"iTXt" and text_at is not None and body[keyword_end + 1] != 0)
    if keyword_end < 0 or body[:keyword_end] != _XMP_KEYWORD:
        # Nothing is carried over from other text: compressed text is not worth inflating, and
        # the rest is kept while it leaves Pillow room for an XMP packet within its total.
        if compressed or reading.text_bytes + len(body) + _limit() > PngImagePlugin.MAX_TEXT_MEMORY:
            return False
        reading.text_bytes += len(body)
        return True
    block = f"XMP packet ({kind.decode()} chunk)"
    if reading.xmp:
        reading.notes.append(f"a second {block} follows the first")
        return False
    reading.xmp = True
    if text_at is None:
        reading.notes.append(f"the {block} is malformed or compressed by an unknown method")
        return False
    if compressed:
        return _inflates_within_limit(block, body, text_at, reading)
    if len(body) - text_at > _limit():
        reading.notes.append(f"the {block} is larger than {_limit()} bytes")
        return False
    return True


def _text_start(kind: bytes, body: bytes, keyword_end: int) -> int | None:
    """Where a text chunk's text (or its zlib stream) starts; None where its layout is broken or
    its compression method is not zlib's."""
    if keyword_end < 0:
        return None
    if kind == b"tEXt":
        return keyword_end + 1
    if kind == b"zTXt":
        return keyword_end + 2 if body[keyword_end + 1 : keyword_end + 2] == b"\x00" else None
    # iTXt: a compression flag and method, then a language tag and a translated keyword, each NUL-ended.
    if len(body) < keyword_end + 3 or (body[keyword_end + 1] != 0 and body[keyword_end + 2] != 0):
        return None
    language_end = body.find(b"\x00", keyword_end + 3)
    translated_end = body.find(b"\x00", language_end + 1) if language_end >= 0 else -1
    return translated_end + 1 if translated_end >= 0 else None


def _inflates_within_limit(block: str, body: bytes, stream_at: int, reading: _Reading) -> bool:
    """Whether the zlib stream at ``stream_at`` inflates, to at most Pillow's limit (checked as
    Pillow checks it)."""
    limit = _limit()
    inflater = zlib.decompressobj()
    try:
        inflater.decompress(memoryview(body)[stream_at:], limit)
    except zlib.error:
        reading.notes.append(f"the {block} does not inflate")
        return False
    if inflater.unconsumed_tail:
        reading.notes.append(f"the {block} inflates past {limit} bytes")
        return False
    return True


def _limit() -> int:
    limit: int = PngImagePlugin.MAX_TEXT_CHUNK
    return limit


def _name(kind: bytes, body: memoryview) -> str:
    if kind in _TEXT_CHUNKS and bytes(body[: len(_XMP_KEYWORD) + 1]) == _XMP_KEYWORD + b"\x00":
        return f"XMP packet ({kind.decode()} chunk)"
    if kind == b"iCCP":
        return "ICC profile (iCCP chunk)"
    return f"{kind.decode('latin-1')} chunk"
