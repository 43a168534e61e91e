"""Image probing, decoding and JPEG encoding on small generated images."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from shared.errors import CorruptImage, ImageTooLarge, UnsupportedFormat
from shared.imaging.decoding import (
    SUPPORTED_IMAGE_FORMATS,
    ImageInfo,
    decode_image,
    encode_jpeg,
    probe_image,
    sniff_image_format,
)
from shared.setting_types import Limits

LIMITS = Limits()


def pattern_rgb(height: int = 32, width: int = 64) -> np.ndarray:
    """Four flat quadrants (red, green, blue, white) that fill whole 16x16 JPEG/WebP blocks at
    the default size, so lossy codecs keep them nearly exact; any rotation is visible."""
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[: height // 2, : width // 2] = (255, 0, 0)
    rgb[: height // 2, width // 2 :] = (0, 255, 0)
    rgb[height // 2 :, : width // 2] = (0, 0, 255)
    rgb[height // 2 :, width // 2 :] = (255, 255, 255)
    return rgb


def save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def bgr_of(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[..., ::-1])


def assert_close(actual: np.ndarray, expected: np.ndarray, tolerance: int) -> None:
    assert actual.shape == expected.shape
    assert np.abs(actual.astype(int) - expected.astype(int)).max() <= tolerance


def assert_close_off_edges(actual: np.ndarray, expected: np.ndarray, tolerance: int) -> None:
    """``assert_close`` except within 2 pixels of a colour edge of ``expected`` (H, W, 3),
    where chroma subsampling in lossy codecs legitimately blurs."""
    assert actual.shape == expected.shape
    interior = np.ones(expected.shape[:2], bool)
    for axis in (0, 1):
        for shift in (-2, -1, 1, 2):
            interior &= (np.roll(expected, shift, axis=axis) == expected).all(axis=2)
    difference = np.abs(actual.astype(int) - expected.astype(int))
    assert difference[interior].max() <= tolerance


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG (8-bit RGB) whose header declares the size, with an empty IDAT: no pixel data."""
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + ihdr + png_chunk(b"IDAT", b"") + png_chunk(b"IEND", b"")


# --- format detection and probing -----------------------------------------------------


@pytest.mark.parametrize(
    "fmt, options",
    [
        ("JPEG", {}),
        ("PNG", {}),
        ("BMP", {}),
        ("TIFF", {}),
        ("WEBP", {}),
        ("GIF", {}),
        ("TIFF", {"compression": "tiff_lzw"}),
    ],
)
def test_probe_reports_format_and_size(fmt, options):
    data = save(Image.fromarray(pattern_rgb(24, 32)), fmt, **options)
    assert sniff_image_format(data) == fmt
    assert probe_image(data, LIMITS) == ImageInfo(format=fmt, width=32, height=24, orientation=1)


def test_big_endian_tiff_is_recognised():
    grey = np.array([[0, 100, 255]], np.uint16)
    big_endian = Image.frombytes("I;16B", (3, 1), (grey * 257).astype(">u2").tobytes())
    data = save(big_endian, "TIFF")  # Pillow writes this mode with the "MM" byte order
    assert data[:4] == b"MM\x00*"
    assert sniff_image_format(data) == "TIFF"
    assert decode_image(data, LIMITS)[0, :, 0].tolist() == [0, 100, 255]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello, world",
        b"%PDF-1.7\n" + b"0" * 100,
        b"P6\n4 4\n255\n" + bytes(48),  # PPM: OpenCV reads it, but it is not accepted
        b"\x00\x00\x00\x0cjP  \r\n\x87\n" + bytes(100),  # JPEG 2000
    ],
)
def test_unsupported_formats_are_refused(data):
    assert sniff_image_format(data) is None
    with pytest.raises(UnsupportedFormat):
        probe_image(data, LIMITS)
    with pytest.raises(UnsupportedFormat):
        decode_image(data, LIMITS)


def test_all_supported_formats_are_listed():
    assert set(SUPPORTED_IMAGE_FORMATS) == {"JPEG", "PNG", "BMP", "TIFF", "WEBP", "GIF"}


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_header_claiming_100_megapixels_is_refused_before_decoding():
    data = png_header_only(10_000, 10_000)
    with pytest.raises(ImageTooLarge) as raised:
        probe_image(data, LIMITS)
    assert raised.value.details["width"] == 10_000
    # Had the pixels been decoded, the missing IDAT would make this CorruptImage.
    with pytest.raises(ImageTooLarge):
        decode_image(data, LIMITS)


def test_pillow_decompression_bomb_error_maps_to_image_too_large():
    generous = Limits(max_pixels=10**12, max_side=10**6)
    with pytest.raises(ImageTooLarge):  # 400 megapixels: Pillow's own guard fires first
        probe_image(png_header_only(20_000, 20_000), generous)


def test_max_pixels_limit():
    data = save(Image.fromarray(pattern_rgb(20, 20)), "PNG")
    assert probe_image(data, Limits(max_pixels=400)).width == 20
    with pytest.raises(ImageTooLarge):
        probe_image(data, Limits(max_pixels=399))


def test_one_by_100000_image_hits_max_side_and_decodes_when_allowed():
    row = np.zeros((1, 100_000), np.uint8)
    row[0, ::2] = 200
    data = cv2.imencode(".png", row)[1].tobytes()
    with pytest.raises(ImageTooLarge):
        decode_image(data, LIMITS)  # default max_side is 30 000
    bgr = decode_image(data, Limits(max_side=100_000))
    assert bgr.shape == (1, 100_000, 3)
    assert bgr[0, 0].tolist() == [200, 200, 200] and bgr[0, 1].tolist() == [0, 0, 0]


def test_header_with_zero_width_is_corrupt():
    with pytest.raises(CorruptImage):
        probe_image(png_header_only(0, 10), LIMITS)


# --- decoding to 8-bit BGR ------------------------------------------------------------


def test_decoded_array_is_contiguous_uint8_bgr():
    rgb = pattern_rgb()
    bgr = decode_image(save(Image.fromarray(rgb), "PNG"), LIMITS)
    assert bgr.dtype == np.uint8 and bgr.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(bgr, bgr_of(rgb))


@pytest.mark.parametrize(
    "fmt, options, tolerance",
    [
        ("JPEG", {"quality": 95}, 12),
        ("JPEG", {"quality": 95, "progressive": True}, 12),
        ("BMP", {}, 0),
        ("TIFF", {}, 0),
        ("TIFF", {"compression": "jpeg"}, 12),
        ("WEBP", {"lossless": True}, 0),
        ("WEBP", {"quality": 95}, 24),
        ("GIF", {}, 0),
    ],
)
def test_colour_formats_decode_to_bgr(fmt, options, tolerance):
    rgb = pattern_rgb()
    bgr = decode_image(save(Image.fromarray(rgb), fmt, **options), LIMITS)
    assert_close_off_edges(bgr, bgr_of(rgb), tolerance)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "TIFF"])
def test_greyscale_becomes_three_equal_channels(fmt):
    grey = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (8, 1))
    bgr = decode_image(save(Image.fromarray(grey, "L"), fmt), LIMITS)
    assert bgr.shape == (8, 32, 3)
    assert (bgr[..., 0] == bgr[..., 1]).all() and (bgr[..., 1] == bgr[..., 2]).all()
    assert_close(bgr[..., 0], grey, 0 if fmt != "JPEG" else 4)


def test_one_bit_png_decodes_to_black_and_white():
    bits = np.zeros((8, 8), bool)
    bits[:, 4:] = True
    bgr = decode_image(save(Image.fromarray(bits), "PNG"), LIMITS)
    assert bgr[0, 0].tolist() == [0, 0, 0] and bgr[0, 7].tolist() == [255, 255, 255]


@pytest.mark.parametrize("extension", [".png", ".tiff"])
def test_16_bit_samples_are_scaled_to_8_bit(extension):
    levels = np.array([0, 1, 128, 200, 255], np.uint16)
    grey16 = np.tile(levels * 257, (4, 1))  # 257 * v on the 16-bit scale is v on the 8-bit one
    grey = decode_image(cv2.imencode(extension, grey16)[1].tobytes(), LIMITS)
    assert grey.dtype == np.uint8
    np.testing.assert_array_equal(grey[0], np.repeat(levels[:, None], 3, axis=1))

    colour16 = np.dstack([grey16, grey16[:, ::-1], np.full_like(grey16, 65535)])
    colour = decode_image(cv2.imencode(extension, colour16)[1].tobytes(), LIMITS)
    np.testing.assert_array_equal(colour[0, :, 0], levels)
    np.testing.assert_array_equal(colour[0, :, 1], levels[::-1])
    np.testing.assert_array_equal(colour[0, :, 2], 255)


def test_float_tiff_is_read_as_unit_range():
    values = np.array([[0.0, 0.5, 1.0, 2.0, -1.0]], np.float32)
    bgr = decode_image(save(Image.fromarray(values, "F"), "TIFF"), LIMITS)
    np.testing.assert_array_equal(bgr[0, :, 0], [0, 128, 255, 255, 0])


def test_palette_png_decodes_to_its_colours():
    indices = np.array([[0, 1], [2, 3]], np.uint8)
    palette_image = Image.fromarray(indices, "P")
    palette_image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30])
    bgr = decode_image(save(palette_image, "PNG"), LIMITS)
    assert bgr.tolist() == [[[0, 0, 255], [0, 255, 0]], [[255, 0, 0], [30, 20, 10]]]


def test_palette_transparency_is_composited_over_white():
    indices = np.array([[0, 1]], np.uint8)
    palette_image = Image.fromarray(indices, "P")
    palette_image.putpalette([0, 0, 0, 0, 0, 255])
    bgr = decode_image(save(palette_image, "PNG", transparency=0), LIMITS)
    assert bgr.tolist() == [[[255, 255, 255], [255, 0, 0]]]


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
def test_rgba_is_composited_over_white(fmt):
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., :3] = (0, 0, 255)  # blue
    rgba[..., 3] = [[0, 255, 128], [0, 255, 128]]
    options = {"lossless": True, "exact": True} if fmt == "WEBP" else {}
    bgr = decode_image(save(Image.fromarray(rgba, "RGBA"), fmt, **options), LIMITS)
    assert bgr[0, 0].tolist() == [255, 255, 255]  # transparent -> background
    assert bgr[0, 1].tolist() == [255, 0, 0]  # opaque blue
    assert_close(bgr[0, 2], np.array([255, 127, 127]), 1)  # half-transparent blue over white


def test_grey_with_alpha_is_composited_over_white():
    la = np.zeros((1, 3, 2), np.uint8)
    la[..., 1] = [0, 255, 128]
    bgr = decode_image(save(Image.fromarray(la, "LA"), "PNG"), LIMITS)
    assert bgr[0].tolist() == [[255, 255, 255], [0, 0, 0], [127, 127, 127]]


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_is_converted_to_bgr(fmt):
    rgb = pattern_rgb()
    cmyk = Image.fromarray(rgb).convert("CMYK")
    options = {"quality": 95} if fmt == "JPEG" else {}
    bgr = decode_image(save(cmyk, fmt, **options), LIMITS)
    assert_close_off_edges(bgr, bgr_of(rgb), 12)


def test_gif_decodes_its_first_frame():
    red = Image.new("RGB", (8, 8), (255, 0, 0))
    green = Image.new("RGB", (8, 8), (0, 255, 0))
    data = save(red, "GIF", save_all=True, append_images=[green])
    bgr = decode_image(data, LIMITS)
    assert (bgr == (0, 0, 255)).all()


# --- EXIF orientation -----------------------------------------------------------------


def with_orientation(rgb: np.ndarray, fmt: str, orientation: int, **options) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return save(Image.fromarray(rgb), fmt, exif=exif, **options)


def test_jpeg_exif_orientation_is_applied():
    rgb = pattern_rgb()
    data = with_orientation(rgb, "JPEG", 6, quality=95)  # 6: rotate 90 degrees clockwise
    info = probe_image(data, LIMITS)
    assert (info.width, info.height, info.orientation) == (32, 64, 6)
    bgr = decode_image(data, LIMITS)
    assert bgr.shape == (64, 32, 3)
    assert_close_off_edges(bgr, bgr_of(np.rot90(rgb, -1)), 12)
    assert_close(bgr[0, -1], np.array([0, 0, 255]), 12)  # red, top-left before, is now top-right


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
def test_every_orientation_matches_pillow_exif_transpose(fmt, orientation):
    rgb = pattern_rgb(6, 10)
    rgb[0, 0] = (1, 2, 3)  # make every transform distinguishable
    if fmt == "TIFF":
        data = save(Image.fromarray(rgb), "TIFF", tiffinfo={0x0112: orientation})
    else:
        data = with_orientation(rgb, fmt, orientation, **({"lossless": True} if fmt == "WEBP" else {}))
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    assert expected.shape[:2] == ((10, 6) if orientation >= 5 else (6, 10))
    np.testing.assert_array_equal(decode_image(data, LIMITS), bgr_of(expected))


def test_out_of_range_orientation_is_ignored():
    rgb = pattern_rgb()
    bgr = decode_image(with_orientation(rgb, "PNG", 9), LIMITS)
    np.testing.assert_array_equal(bgr, bgr_of(rgb))


# --- damaged data and polyglots -------------------------------------------------------


@pytest.mark.parametrize("fmt, options", [("JPEG", {}), ("JPEG", {"progressive": True}), ("PNG", {})])
@pytest.mark.parametrize("keep", [0.5, 0.9, -2])
def test_truncated_image_is_corrupt_not_partly_grey(fmt, options, keep):
    noise = np.random.default_rng(7).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = save(Image.fromarray(noise), fmt, **options)
    cut = data[:keep] if keep < 0 else data[: int(len(data) * keep)]  # -2: only the end marker lost
    with pytest.raises(CorruptImage):
        decode_image(cut, LIMITS)


@pytest.mark.parametrize("fmt", ["TIFF", "WEBP", "BMP", "GIF"])
def test_truncated_other_formats_are_corrupt(fmt):
    noise = np.random.default_rng(8).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    data = save(Image.fromarray(noise), fmt)
    with pytest.raises(CorruptImage):
        decode_image(data[: len(data) * 3 // 4], LIMITS)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about the bogus TIFF fields
@pytest.mark.parametrize("magic", [b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n", b"BM", b"II*\x00", b"GIF89a"])
def test_magic_bytes_followed_by_garbage_are_corrupt(magic):
    with pytest.raises(CorruptImage):
        decode_image(magic + b"\x01" * 200, LIMITS)


def test_png_signature_on_jpeg_body_is_corrupt():
    jpeg = save(Image.fromarray(pattern_rgb()), "JPEG")
    with pytest.raises(CorruptImage):
        decode_image(b"\x89PNG\r\n\x1a\n" + jpeg, LIMITS)


def test_jpeg_with_a_zip_appended_decodes_as_the_jpeg():
    rgb = pattern_rgb()
    jpeg = save(Image.fromarray(rgb), "JPEG", quality=95)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("payload.txt", b"hidden")
    polyglot = jpeg + archive.getvalue()
    assert zipfile.is_zipfile(io.BytesIO(polyglot))
    assert_close_off_edges(decode_image(polyglot, LIMITS), bgr_of(rgb), 12)


# --- encoding -------------------------------------------------------------------------


def test_encode_jpeg_round_trips_as_baseline():
    bgr = bgr_of(pattern_rgb(48, 64))
    data = encode_jpeg(bgr, 90)
    assert data[:3] == b"\xff\xd8\xff" and data[-2:] == b"\xff\xd9"
    assert b"\xff\xc0" in data and b"\xff\xc2" not in data  # baseline, not progressive
    assert_close_off_edges(decode_image(data, LIMITS), bgr, 12)


def test_encode_jpeg_quality_changes_size():
    noise = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert len(encode_jpeg(noise, 30)) < len(encode_jpeg(noise, 95))


@pytest.mark.parametrize(
    "pixels, quality",
    [
        (np.zeros((4, 4), np.uint8), 90),
        (np.zeros((4, 4, 4), np.uint8), 90),
        (np.zeros((4, 4, 3), np.float32), 90),
        (np.zeros((4, 4, 3), np.uint8), 0),
        (np.zeros((4, 4, 3), np.uint8), 101),
    ],
)
def test_encode_jpeg_rejects_bad_input(pixels, quality):
    with pytest.raises(ValueError):
        encode_jpeg(pixels, quality)
