"""Photos with metadata, made with Pillow, for the metadata and output-option tests.

The IPTC record is put in by hand (a Photoshop APP13 segment after the JFIF header), as
cameras and photo tools write it: Pillow reads IPTC but cannot write it into a JPEG.
"""

from __future__ import annotations

import io
import struct
import zlib
from functools import cache

import numpy as np
from PIL import Image, ImageCms

CAPTION = "Grandmother at the harbour, 1952"
CREDIT = "Family archive"
DATE_TAKEN = "1952:07:14 15:30:00"
XMP_CAPTION = "Harbour, summer 1952"
EXIF_IFD = 0x8769
DATE_TIME_ORIGINAL = 0x9003
ORIENTATION = 0x0112
IPTC_CAPTION = (2, 120)
IPTC_CREDIT = (2, 110)


@cache  # LittleCMS stamps a profile with the time it was made: one per test run
def srgb_profile() -> bytes:
    profile: bytes = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return profile


def xmp_packet(orientation: int = 6) -> bytes:
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        f'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="{orientation}">'
        f'<dc:description><rdf:Alt><rdf:li xml:lang="x-default">{XMP_CAPTION}</rdf:li></rdf:Alt></dc:description>'
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
        '<?xpacket end="w"?>'
    ).encode()


def iptc_records() -> bytes:
    def record(number: int, value: str) -> bytes:
        data = value.encode()
        return b"\x1c\x02" + bytes((number,)) + struct.pack(">H", len(data)) + data

    return record(IPTC_CAPTION[1], CAPTION) + record(IPTC_CREDIT[1], CREDIT)


def with_app13(jpeg: bytes, iptc: bytes) -> bytes:
    """``jpeg`` with a Photoshop APP13 segment holding ``iptc`` as resource 0x0404, after SOI and APP0."""
    resource = b"8BIM\x04\x04\x00\x00" + struct.pack(">I", len(iptc)) + iptc + b"\x00" * (len(iptc) % 2)
    data = b"Photoshop 3.0\x00" + resource
    segment = b"\xff\xed" + struct.pack(">H", len(data) + 2) + data
    at = 2
    if jpeg[2:4] == b"\xff\xe0":
        at += 2 + int.from_bytes(jpeg[4:6], "big")
    return jpeg[:at] + segment + jpeg[at:]


def stored_pixels(width: int, height: int) -> np.ndarray:
    """Grey pixels as stored (before orientation): a bright left column marks where the top-left is."""
    pixels = np.full((height, width), 90, np.uint8)
    pixels[:, : max(1, width // 8)] = 230
    return pixels


def photo_jpeg(width: int = 64, height: int = 40, orientation: int = 6) -> bytes:
    """A grey JPEG as a camera writes one: ICC profile, EXIF (orientation, DateTimeOriginal),
    XMP with a caption and a tiff:Orientation, IPTC caption and credit."""
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif.get_ifd(EXIF_IFD)[DATE_TIME_ORIGINAL] = DATE_TAKEN
    buffer = io.BytesIO()
    Image.fromarray(stored_pixels(width, height), "L").convert("RGB").save(
        buffer, "JPEG", quality=95, exif=exif, icc_profile=srgb_profile(), xmp=xmp_packet(orientation)
    )
    return with_app13(buffer.getvalue(), iptc_records())


# --- hostile metadata -----------------------------------------------------------------------

RDF_NAMESPACE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
PLANTED_MODEL = "FAKE-MODEL"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def grey_png_with(*chunks: bytes, width: int = 32, height: int = 24) -> bytes:
    """A grey PNG (written by Pillow: IHDR, IDAT, IEND) with ``chunks`` after its IHDR."""
    buffer = io.BytesIO()
    Image.fromarray(stored_pixels(width, height), "L").save(buffer, "PNG")
    png = buffer.getvalue()
    ihdr_end = 8 + 8 + 13 + 4
    return png[:ihdr_end] + b"".join(chunks) + png[ihdr_end:]


def xmp_chunk(packet: bytes, compressed: bool = True) -> bytes:
    """An iTXt chunk keyed for XMP, deflated or not."""
    flag = b"\x01\x00" if compressed else b"\x00\x00"
    return png_chunk(
        b"iTXt", b"XML:com.adobe.xmp\x00" + flag + b"\x00\x00" + (zlib.compress(packet) if compressed else packet)
    )


def open_descriptions_xmp(size: int = 1024**2 - 1024) -> bytes:
    """About ``size`` bytes of ``rdf:Description`` openings, never closed, in a packet that ends
    as XMP does: what made a regular expression over the packet take quadratic time."""
    head = xmp_packet().split(b"<rdf:Description")[0]
    unit = b'<rdf:Description rdf:about="" xmlns:colorize="https://colorize.invalid/ns/1.0/" '
    tail = b"</rdf:RDF></x:xmpmeta>"
    return head + unit * ((size - len(head) - len(tail)) // len(unit)) + tail


def planted_xmp() -> bytes:
    """The camera's packet with a model of our namespace planted in its description, and a
    trailing comment that opens before ``</rdf:RDF>`` and closes after it."""
    planted = xmp_packet().replace(
        b' tiff:Orientation="6"',
        f' tiff:Orientation="6" xmlns:colorize="https://colorize.invalid/ns/1.0/" colorize:model="{PLANTED_MODEL}"'.encode(),
    )
    return planted.replace(b'<?xpacket end="w"?>', b'<!-- </rdf:RDF> --><?xpacket end="w"?>')


def inflating(size: int) -> bytes:
    """A zlib stream of ``size`` zero bytes (a few kilobytes for megabytes)."""
    return zlib.compress(bytes(size), 9)
