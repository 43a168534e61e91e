"""Property-based fuzzing of the input layer with random and mutated bytes.

Whatever the bytes, ``detect_source_kind``, ``iter_entries`` (with ``read()`` of every
entry) and ``decode_image`` may only fail with the project's own error types
(``ColorizeError`` subclasses; ``ItemError`` for images): never with a library exception.

Each test runs a modest number of examples by default so the suite stays quick. Set
``COLORIZE_FUZZ_EXAMPLES`` to run more, e.g.::

    COLORIZE_FUZZ_EXAMPLES=5000 .venv/bin/python -m pytest tests/test_fuzz_inputs.py
"""

from __future__ import annotations

import functools
import io
import os
import struct
import tarfile
import time
import zipfile
import zlib

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from shared.errors import ColorizeError, ItemError
from shared.imaging.decoding import decode_image
from shared.jobs.source_kinds import detect_source_kind
from shared.setting_types import Limits
from worker.archive_entries import iter_entries

FUZZ = settings(
    max_examples=int(os.environ.get("COLORIZE_FUZZ_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Small limits keep mutated size fields from turning into slow, large allocations.
LIMITS = Limits(
    max_entries=50,
    max_expanded_bytes=4 * 1024**2,
    max_entry_bytes=1024**2,
    max_pixels=1_000_000,
    max_side=4096,
)


def _image_seeds() -> list[bytes]:
    rng = np.random.default_rng(11)
    rgb = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    base = Image.fromarray(rgb)
    seeds = []
    for image, fmt, options in [
        (base, "JPEG", {}),
        (base, "JPEG", {"progressive": True}),
        (base.convert("CMYK"), "JPEG", {}),
        (base, "PNG", {}),
        (base.convert("RGBA"), "PNG", {}),
        (base.convert("P"), "PNG", {"transparency": 0}),
        (base, "BMP", {}),
        (base, "TIFF", {"compression": "tiff_lzw"}),
        (base.convert("RGBA"), "TIFF", {}),
        (base, "WEBP", {}),
        (base, "WEBP", {"lossless": True}),
        (base, "GIF", {}),
    ]:
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        seeds.append(buffer.getvalue())
    seeds.append(cv2.imencode(".png", (rgb.astype(np.uint16) * 257))[1].tobytes())
    return seeds


def _archive_seeds() -> list[tuple[str, bytes]]:
    files = [("a.jpg", b"\xff\xd8\xff" + bytes(200)), ("dir/b.png", b"png" * 50), ("c.txt", b"")]
    seeds = []
    for method in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=method) as archive:
            for name, data in files:
                archive.writestr(name, data)
        seeds.append(("zip", buffer.getvalue()))
    for mode, kind, fmt in (
        ("w", "tar", tarfile.GNU_FORMAT),
        ("w:gz", "tar.gz", tarfile.PAX_FORMAT),
        ("w", "tar", tarfile.PAX_FORMAT),
    ):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode=mode, format=fmt) as archive:
            for name, data in files:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
        seeds.append((kind, buffer.getvalue()))
    return seeds


IMAGE_SEEDS = _image_seeds()
ARCHIVE_SEEDS = _archive_seeds()

# Pillow warns (UserWarning) about every damaged TIFF/EXIF field it skips; expected here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_unmutated_seeds_are_valid():
    """The mutations start from inputs that decode and read completely."""
    for data in IMAGE_SEEDS:
        assert decode_image(data, LIMITS).shape == (12, 16, 3)
    for kind, data in ARCHIVE_SEEDS:
        assert detect_source_kind(data[:512]) == kind
        entries = list(iter_entries(io.BytesIO(data), kind, LIMITS))
        assert [entry.path for entry in entries] == ["a.jpg", "dir/b.png", "c.txt"]


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """``seed`` with a few bytes overwritten, a slice removed or inserted, or cut short."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(0, 8))):
        if not data:
            break
        position = draw(st.integers(0, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    operation = draw(st.sampled_from(["none", "truncate", "delete", "insert"]))
    if operation == "truncate" and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif operation == "delete" and data:
        start = draw(st.integers(0, len(data) - 1))
        data = data[:start] + data[start + draw(st.integers(1, 64)) :]
    elif operation == "insert":
        start = draw(st.integers(0, len(data)))
        data = data[:start] + bytearray(draw(st.binary(min_size=1, max_size=64))) + data[start:]
    return bytes(data)


def image_inputs() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=512),
        st.sampled_from(IMAGE_SEEDS).flatmap(mutated),
    )


def check_decode(data: bytes) -> None:
    try:
        bgr = decode_image(data, LIMITS)
    except ItemError:
        return
    assert bgr.dtype == np.uint8 and bgr.ndim == 3 and bgr.shape[2] == 3
    assert bgr.shape[0] * bgr.shape[1] <= LIMITS.max_pixels


def check_archive(data: bytes, kind: str) -> None:
    try:
        for entry in iter_entries(io.BytesIO(data), kind, LIMITS):
            assert isinstance(entry.path, str)
            try:
                content = entry.read()
            except ItemError:
                continue
            assert len(content) <= LIMITS.max_entry_bytes
    except ColorizeError:
        pass


@FUZZ
@given(image_inputs())
def test_decode_image_only_raises_item_errors(data):
    check_decode(data)


@FUZZ
@given(st.sampled_from(ARCHIVE_SEEDS).flatmap(lambda seed: st.tuples(st.just(seed[0]), mutated(seed[1]))))
def test_mutated_archives_only_raise_colorize_errors(kind_and_data):
    kind, data = kind_and_data
    check_archive(data, kind)


@FUZZ
@given(st.sampled_from(["zip", "tar", "tar.gz"]), st.binary(max_size=2048))
def test_random_bytes_as_archives_only_raise_colorize_errors(kind, data):
    check_archive(data, kind)


@FUZZ
@given(
    st.one_of(st.binary(max_size=1024), st.sampled_from([s for _, s in ARCHIVE_SEEDS] + IMAGE_SEEDS).flatmap(mutated))
)
def test_detect_source_kind_only_raises_colorize_errors(data):
    try:
        kind = detect_source_kind(data[:512], None)
    except ColorizeError:
        return
    assert kind in ("zip", "tar", "tar.gz", "image")


# --- hostile headers the mutations rarely reach -------------------------------------------

# Each must be refused or decoded at once, with no large allocation on the way.
HOSTILE_TIME_S = 5.0


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_with(chunks: list[bytes], width: int = 16, height: int = 12) -> bytes:
    rows = b"".join(b"\0" + bytes(width * 3) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + b"".join(chunks)
        + _png_chunk(b"IDAT", zlib.compress(rows))
        + _png_chunk(b"IEND", b"")
    )


@functools.cache
def _zlib_bomb(mib: int = 64) -> bytes:
    """``mib`` MiB of zeros in about 1/1000 of that: a chunk that would inflate to it."""
    compressor, zeros = zlib.compressobj(9), bytes(1024**2)
    return b"".join(compressor.compress(zeros) for _ in range(mib)) + compressor.flush()


def _small_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def _jpeg_with_segments(segments: bytes) -> bytes:
    jpeg = _small_jpeg()
    return jpeg[:2] + segments + jpeg[2:]  # right after the start-of-image marker


def _app_segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


# Built when their test runs: some are tens of megabytes.
HOSTILE_IMAGES = {
    "png zTXt bomb": lambda: _png_with([_png_chunk(b"zTXt", b"Comment\0\0" + _zlib_bomb())]),
    "png iTXt bomb": lambda: _png_with([_png_chunk(b"iTXt", b"Comment\0\1\0\0\0" + _zlib_bomb())]),
    "png iCCP bomb": lambda: _png_with([_png_chunk(b"iCCP", b"icc\0\0" + _zlib_bomb())]),
    "png 20000 text chunks": lambda: _png_with(
        [_png_chunk(b"tEXt", b"k%d\0" % i + b"v" * 1000) for i in range(20_000)]
    ),
    "png 20 MiB text chunk": lambda: _png_with([_png_chunk(b"tEXt", b"k\0" + bytes(20 * 1024**2))]),
    "jpeg 300 colour-profile segments": lambda: _jpeg_with_segments(
        b"".join(_app_segment(0xE2, b"ICC_PROFILE\0" + bytes([i % 255 + 1, 255]) + bytes(65_000)) for i in range(300))
    ),
    "jpeg exif claiming 65535 tags": lambda: _jpeg_with_segments(
        _app_segment(0xE1, b"Exif\0\0MM\0*\0\0\0\x08" + struct.pack(">H", 0xFFFF) + bytes(65_000))
    ),
}


@pytest.mark.parametrize("name", HOSTILE_IMAGES)
def test_hostile_image_headers_are_refused_or_decoded_at_once(name):
    data = HOSTILE_IMAGES[name]()
    started = time.monotonic()
    check_decode(data)
    assert time.monotonic() - started < HOSTILE_TIME_S


def _zip_with(info: zipfile.ZipInfo, comment: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(info, b"\xff\xd8\xff" + bytes(100))
        archive.writestr("after.jpg", b"\xff\xd8\xff" + bytes(50))
        archive.comment = comment
    return buffer.getvalue()


def _zip_info(name: str, extra: bytes = b"") -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.extra = extra
    return info


@pytest.mark.parametrize(
    "data",
    [
        _zip_with(_zip_info("d/" * 20_000 + "a.jpg")),  # a 40,005-character name
        _zip_with(_zip_info("a.jpg", struct.pack("<HH", 0xCAFE, 65_000) + bytes(65_000))),  # 64 KB extra field
        _zip_with(_zip_info("a.jpg"), comment=b"c" * 65_535),  # the longest archive comment
    ],
    ids=["long name", "long extra field", "long comment"],
)
def test_zip_headers_at_their_size_limits_are_read(data):
    started = time.monotonic()
    entries = [(entry.path, entry.read()) for entry in iter_entries(io.BytesIO(data), "zip", LIMITS)]
    assert [path.rsplit("/", 1)[-1] for path, _ in entries] == ["a.jpg", "after.jpg"]
    assert [len(content) for _, content in entries] == [103, 53]
    assert time.monotonic() - started < HOSTILE_TIME_S
