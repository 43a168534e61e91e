"""Property-based fuzzing of the input layer with random and mutated bytes.

Whatever the bytes, ``detect_source_kind``, ``iter_entries`` (with ``read()`` of every
entry) and ``decode_image`` may only fail with the project's own error types
(``ColorizeError`` subclasses; ``ItemError`` for images): never with a library exception.

Each test runs a modest number of examples by default so the suite stays quick. Set
``COLORIZE_FUZZ_EXAMPLES`` to run more, e.g.::

    COLORIZE_FUZZ_EXAMPLES=5000 .venv/bin/python -m pytest tests/test_fuzz_inputs.py
"""

from __future__ import annotations

import io
import os
import tarfile
import zipfile

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from shared.archives import detect_source_kind, iter_entries
from shared.errors import ColorizeError, ItemError
from shared.imaging import decode_image
from shared.settings import Limits

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
    for mode, kind, fmt in (("w", "tar", tarfile.GNU_FORMAT), ("w:gz", "tar.gz", tarfile.PAX_FORMAT), ("w", "tar", tarfile.PAX_FORMAT)):
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
@given(st.one_of(st.binary(max_size=1024), st.sampled_from([s for _, s in ARCHIVE_SEEDS] + IMAGE_SEEDS).flatmap(mutated)))
def test_detect_source_kind_only_raises_colorize_errors(data):
    try:
        kind = detect_source_kind(data[:512], None)
    except ColorizeError:
        return
    assert kind in ("zip", "tar", "tar.gz", "image")
