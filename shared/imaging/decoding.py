"""Safe image decoding and JPEG encoding (results in other formats: ``shared.imaging.encoding``).

Every image goes through the same path:

1. ``sniff_image_format`` (``shared.imaging.formats``) picks the format from the leading
   magic bytes; only JPEG, PNG, BMP, TIFF, WebP and GIF are accepted (GIF and animated
   WebP: first frame only).
2. ``probe_image`` reads the header with Pillow (no pixel is decoded; a PNG's metadata chunks
   that Pillow would refuse the file over are left out: ``shared.imaging.png_chunks``) and applies the size
   limits, so a decompression bomb is refused before any pixel buffer is allocated; from
   the header's sample depth and channels it also knows the memory decoding will take,
   and refuses an image that cannot be decoded within the worker's memory budget
   (``shared.imaging.memory_budget``).
3. ``decode_image`` decodes with OpenCV in ``IMREAD_UNCHANGED`` mode, which keeps 16-bit
   samples and alpha, then normalises to 8-bit BGR a strip of rows at a time, so that no
   full-size temporary exists beside the decoder's array and the result: 16-bit scaled,
   float clipped to [0, 1], grey expanded, alpha composited over white; then EXIF
   orientation is applied.

OpenCV (5.x) refuses truncated data (it returns nothing rather than a partly grey image),
so a cut-off upload becomes ``CorruptImage``. OpenCV decodes every accepted variant itself
(CMYK, palette, grey + alpha, 16-bit, float TIFF, animated GIF/WebP), so there is no
second decoder to fall back to.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np
from PIL import Image, TiffImagePlugin

from shared.errors import CorruptImage, ImageTooLarge, UnsupportedFormat
from shared.imaging.formats import SUPPORTED_IMAGE_FORMATS, sniff_image_format
from shared.imaging.memory_budget import MemoryBudget
from shared.imaging.png_chunks import readable_png
from shared.setting_types import Limits

# Pillow reports multi-picture JPEGs (camera MPO files) as their own format.
_PILLOW_FORMAT_ALIASES = {"MPO": "JPEG"}

# libtiff, inside both Pillow and OpenCV, applies the TIFF orientation tag itself: Pillow
# reports the oriented size and OpenCV returns oriented pixels, even in IMREAD_UNCHANGED mode.
# OpenCV's other decoders leave orientation to the caller in that mode.
_ORIENTED_BY_DECODER = frozenset({"TIFF"})

_EXIF_ORIENTATION_TAG = 0x0112
_TIFF_BITS_PER_SAMPLE_TAG = 258
_TIFF_SAMPLES_PER_PIXEL_TAG = 277
_TIFF_EXTRA_SAMPLES_TAG = 338
_TIFF_ALPHA_KINDS = frozenset({1, 2})  # associated, unassociated
# Pillow modes whose samples are wider than a byte; the others have 8-bit samples (or fewer,
# which OpenCV widens to 8).
_MODE_SAMPLE_BYTES = {"I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2, "I": 4, "F": 4}
# Pixels converted to 8-bit BGR at a time.
_STRIP_PIXELS = 1 << 18
# Beside the full-size arrays: a strip's temporaries, the decoder's own buffers.
DECODE_OVERHEAD_BYTES = 16 * 1024**2


@dataclass(frozen=True)
class ImageInfo:
    """What the header says. ``width`` and ``height`` are as displayed, after orientation."""

    format: str  # one of SUPPORTED_IMAGE_FORMATS
    width: int
    height: int
    orientation: int = 1  # EXIF orientation, 1..8


@dataclass(frozen=True)
class DecodeCost:
    """What decoding an image takes: its pixels, and the memory ``decode_image`` holds at its peak."""

    pixels: int
    bytes: int


@dataclass(frozen=True)
class _Header:
    info: ImageInfo
    cost: DecodeCost
    # OpenCV reads 8-bit TIFF through libtiff's RGBA interface, which premultiplies the
    # colour by a declared alpha channel.
    tiff_alpha: bool = False


def probe_image(data: bytes, limits: Limits) -> ImageInfo:
    """Read format, size and orientation from the header only, enforcing the size limits.

    Raises ``UnsupportedFormat`` (not one of the supported formats), ``ImageTooLarge``
    (more than ``limits.max_pixels`` pixels, a side longer than ``limits.max_side``, or more
    memory to decode and colorize than ``limits.worker_memory_bytes`` allows one image) or
    ``CorruptImage`` (the header of a supported format cannot be read).

    ``data`` may be the leading part of a file only, enough to hold its header.
    """
    return _read_header(data, limits).info


def decode_cost(data: bytes, limits: Limits) -> DecodeCost:
    """What decoding the image will take, read from its header with the checks of ``probe_image``."""
    return _read_header(data, limits).cost


def _read_header(data: bytes, limits: Limits) -> _Header:
    fmt = sniff_image_format(data[:16])
    if fmt is None:
        supported = ", ".join(SUPPORTED_IMAGE_FORMATS)
        raise UnsupportedFormat(f"not a supported image format ({supported})")
    header = readable_png(data)[0] if fmt == "PNG" else data  # metadata never fails an image
    try:
        with Image.open(io.BytesIO(header), formats=[fmt]) as img:
            width, height = img.size
            orientation = _read_orientation(img)
            tiff_alpha = fmt == "TIFF" and _declares_alpha(img)
            channels, sample_bytes = _decoded_layout(img, data)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"image is too large to decode safely: {exc}") from exc
    except MemoryError:
        raise
    except Exception as exc:  # Pillow signals malformed headers with many exception types
        raise CorruptImage(f"cannot read the {fmt} header: {exc}", format=fmt) from exc
    if width < 1 or height < 1:
        raise CorruptImage(f"{fmt} header declares an empty image ({width}x{height})", format=fmt)
    _check_size(width, height, limits)
    oriented_here = orientation != 1 and fmt not in _ORIENTED_BY_DECODER
    decode_bytes = _decode_bytes(width * height, channels, sample_bytes, oriented_here)
    _check_memory(width, height, decode_bytes, limits)
    if orientation >= 5 and fmt not in _ORIENTED_BY_DECODER:  # 5-8 swap the axes
        width, height = height, width
    info = ImageInfo(format=fmt, width=width, height=height, orientation=orientation)
    return _Header(info=info, cost=DecodeCost(width * height, decode_bytes), tiff_alpha=tiff_alpha)


def decode_image(data: bytes, limits: Limits) -> np.ndarray:
    """Decode to uint8 BGR (H, W, 3) as displayed, after checking the header with ``probe_image``.

    Raises the errors of ``probe_image``, ``CorruptImage`` when the pixel data is truncated
    or malformed, and ``UnsupportedFormat`` for sample layouts with no sensible 8-bit BGR
    meaning (signed integers, more than four channels).
    """
    header = _read_header(data, limits)
    info = header.info
    try:
        pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise CorruptImage(f"cannot decode the {info.format} data: {exc}", format=info.format) from exc
    if pixels is None:
        raise CorruptImage(f"{info.format} data is truncated or malformed", format=info.format)
    premultiplied = header.tiff_alpha and pixels.dtype == np.uint8
    pixels = _to_8bit_bgr(pixels, premultiplied)
    if info.format not in _ORIENTED_BY_DECODER:
        pixels = _orient(pixels, info.orientation)
    if pixels.shape[:2] != (info.height, info.width):
        # The header that passed the size limits must describe the pixels actually decoded.
        raise CorruptImage(
            f"{info.format} decoded to {pixels.shape[1]}x{pixels.shape[0]} "
            f"but its header says {info.width}x{info.height}",
            format=info.format,
        )
    return np.ascontiguousarray(pixels)


def encode_jpeg(bgr: np.ndarray, quality: int) -> bytes:
    """Encode uint8 BGR (H, W, 3) as a baseline JPEG with 4:2:0 chroma subsampling."""
    if bgr.dtype != np.uint8 or bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ValueError(f"expected uint8 BGR (H, W, 3), got {bgr.dtype} {bgr.shape}")
    ok, buf = cv2.imencode(".jpg", bgr, jpeg_params(quality))
    if not ok:
        raise ValueError(f"OpenCV could not encode a {bgr.shape} image as JPEG")
    return buf.tobytes()


def jpeg_params(quality: int) -> list[int]:
    """OpenCV's JPEG encoder parameters: baseline, 4:2:0, ``quality`` (1-100)."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be between 1 and 100, not {quality}")
    # Progressive and optimised Huffman tables cost encode time for a few percent of size.
    return [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_PROGRESSIVE, 0, cv2.IMWRITE_JPEG_OPTIMIZE, 0]


def _check_size(width: int, height: int, limits: Limits) -> None:
    if max(width, height) > limits.max_side:
        raise ImageTooLarge(
            f"image is {width}x{height}; the longest side may be at most {limits.max_side} pixels",
            width=width,
            height=height,
            max_side=limits.max_side,
        )
    if width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"image is {width}x{height} = {width * height} pixels; at most {limits.max_pixels} allowed",
            width=width,
            height=height,
            max_pixels=limits.max_pixels,
        )


def _check_memory(width: int, height: int, decode_bytes: int, limits: Limits) -> None:
    refusal = MemoryBudget.of(limits).refusal(width * height, decode_bytes)
    if refusal is not None:
        raise ImageTooLarge(
            f"image is {width}x{height} and cannot be processed within a worker's memory budget "
            f"of {limits.worker_memory_bytes // 1024**2} MiB: {refusal}",
            width=width,
            height=height,
            decode_bytes=decode_bytes,
            worker_memory_bytes=limits.worker_memory_bytes,
        )


def _decoded_layout(img: Image.Image, data: bytes) -> tuple[int, int]:
    """Channels and bytes per sample of the array OpenCV decodes (``IMREAD_UNCHANGED``), at most."""
    channels, sample_bytes = len(img.getbands()), _MODE_SAMPLE_BYTES.get(img.mode, 1)
    if img.format == "PNG":
        # Pillow reads 16-bit colour as 8-bit; the header says what OpenCV keeps.
        bit_depth, colour_type = data[24], data[25]
        sample_bytes = 2 if bit_depth == 16 else 1
        channels = 4 if colour_type in (3, 4, 6) or "transparency" in img.info else max(channels, 1)
    elif img.format == "TIFF":
        tags = _tiff_tags(img)
        bits = tags.get(_TIFF_BITS_PER_SAMPLE_TAG, 8)
        sample_bytes = max(1, (max(bits if isinstance(bits, tuple) else (bits,)) + 7) // 8)
        channels = max(channels, int(tags.get(_TIFF_SAMPLES_PER_PIXEL_TAG, 1)))
    if img.mode in ("P", "PA"):
        channels = 4  # palettes decode to BGR or BGRA
    return channels, sample_bytes


def _decode_bytes(pixels: int, channels: int, sample_bytes: int, oriented_here: bool) -> int:
    """Peak memory of ``decode_image``, the largest of: OpenCV decoding (twice its array, as
    measured for every format), its array and the 8-bit BGR one converted from it a strip at a
    time, that and its reoriented copy."""
    decoded = channels * sample_bytes
    converted = 3 if (channels, sample_bytes) != (3, 1) else 0
    reoriented = 3 + (3 if oriented_here else 0)
    return pixels * max(2 * decoded, decoded + converted, reoriented) + DECODE_OVERHEAD_BYTES


def _read_orientation(img: Image.Image) -> int:
    """EXIF orientation from the header, 1 when absent, unreadable or out of range."""
    if img.format == "PNG" and "exif" not in img.info:
        # Pillow's PNG getexif() would decode the whole image to look for a late eXIf chunk.
        return 1
    try:
        value = img.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001  # broken metadata, whatever Pillow raises, must not fail a readable image
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _tiff_tags(img: Image.Image) -> TiffImagePlugin.ImageFileDirectory_v2:
    # Pillow opens every image of the "TIFF" format as a TiffImageFile, which holds its tags.
    return cast(TiffImagePlugin.TiffImageFile, img).tag_v2


def _declares_alpha(img: Image.Image) -> bool:
    extra_samples = _tiff_tags(img).get(_TIFF_EXTRA_SAMPLES_TAG, ())
    if isinstance(extra_samples, int):
        extra_samples = (extra_samples,)
    return any(kind in _TIFF_ALPHA_KINDS for kind in extra_samples)


def _to_8bit_bgr(pixels: np.ndarray, premultiplied: bool) -> np.ndarray:
    """uint8 BGR from any decoded layout, converted a strip of rows at a time."""
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if pixels.dtype == np.uint8 and channels == 3:
        return pixels
    if channels > 4:
        raise UnsupportedFormat(f"images with {channels} channels are not supported", channels=channels)
    if pixels.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
        raise UnsupportedFormat(f"{pixels.dtype} samples are not supported", dtype=str(pixels.dtype))
    height, width = pixels.shape[:2]
    bgr = np.empty((height, width, 3), np.uint8)
    rows = max(1, _STRIP_PIXELS // width)
    for start in range(0, height, rows):
        bgr[start : start + rows] = _to_bgr(_to_uint8(pixels[start : start + rows]), premultiplied)
    return bgr


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype == np.uint16:
        return cv2.convertScaleAbs(pixels, alpha=255.0 / 65535.0)
    if pixels.dtype in (np.float32, np.float64):
        # Floating-point samples are nominally in [0, 1]; HDR values beyond it are clipped.
        unit: np.ndarray = np.clip(np.nan_to_num(pixels, nan=0.0), 0.0, 1.0)
        return (unit * 255.0 + 0.5).astype(np.uint8)
    raise UnsupportedFormat(f"{pixels.dtype} samples are not supported", dtype=str(pixels.dtype))


def _to_bgr(pixels: np.ndarray, premultiplied: bool = False) -> np.ndarray:
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if channels == 1:
        return cv2.cvtColor(pixels.reshape(pixels.shape[:2]), cv2.COLOR_GRAY2BGR)
    if channels == 2:  # grey + alpha
        grey, alpha = pixels[..., 0], pixels[..., 1]
        return _over_white(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), alpha, premultiplied)
    if channels == 3:
        return pixels
    if channels == 4:
        return _over_white(pixels[..., :3], pixels[..., 3], premultiplied)
    raise UnsupportedFormat(f"images with {channels} channels are not supported", channels=channels)


def _over_white(bgr: np.ndarray, alpha: np.ndarray, premultiplied: bool) -> np.ndarray:
    """Composite over a white background: c * a + 255 * (1 - a), or c + 255 * (1 - a) when
    the colour is already multiplied by alpha."""
    a = alpha[..., None].astype(np.uint16)
    colour = bgr.astype(np.uint16)
    if premultiplied:
        lightened: np.ndarray = np.minimum(colour + (255 - a), 255)
        return lightened.astype(np.uint8)
    mixed: np.ndarray = colour * a + 255 * (255 - a) + 127
    return (mixed // 255).astype(np.uint8)


_ORIENT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: cv2.flip(a, 1),
    3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
    4: lambda a: cv2.flip(a, 0),
    5: lambda a: cv2.transpose(a),
    6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
    7: lambda a: cv2.flip(cv2.transpose(a), -1),
    8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
}


def _orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    transform = _ORIENT.get(orientation)
    return pixels if transform is None else transform(pixels)
