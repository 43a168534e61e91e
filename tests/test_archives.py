"""Streaming archive reading: kind detection, path safety, bomb limits, damage, naming."""

from __future__ import annotations

import bz2
import gzip
import io
import stat
import struct
import tarfile
import tracemalloc
import zipfile

import pytest

from shared.errors import (
    ArchiveLimitExceeded,
    CorruptArchive,
    EntryTooLarge,
    UnsafeEntry,
    UnsupportedFormat,
    UnsupportedMediaType,
)
from shared.jobs.entry_names import OutputNames, UniqueNames, output_name
from shared.jobs.source_kinds import detect_source_kind
from shared.setting_types import Limits
from worker.archive_entries import RATIO_CHECK_MIN_BYTES, TAR_HEADER_ALLOWANCE, ArchiveEntry, iter_entries

LIMITS = Limits()
JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(500)
ARCHIVE_KINDS = ["zip", "tar", "tar.gz"]


# --- building archives in memory ------------------------------------------------------


def make_zip(files: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, data in files:
            archive.writestr(name, data)
    return buffer.getvalue()


def tar_member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, **fields) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    for key, value in fields.items():
        setattr(info, key, value)
    return info, data


def make_tar(members: list[tuple[tarfile.TarInfo, bytes]], gz: bool = False, fmt: int = tarfile.GNU_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(
        fileobj=buffer, mode="w:gz" if gz else "w", format=fmt, encoding="utf-8", errors="surrogateescape"
    ) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buffer.getvalue()


def make_archive(kind: str, files: list[tuple[str, bytes]]) -> bytes:
    if kind == "zip":
        return make_zip(files)
    return make_tar([tar_member(name, data) for name, data in files], gz=kind == "tar.gz")


def read_all(data: bytes, kind: str, limits: Limits = LIMITS) -> list[tuple[str, object]]:
    """(path, bytes or error type) for every entry, reading each before the next."""
    results = []
    for entry in iter_entries(io.BytesIO(data), kind, limits):
        if entry.error is not None:
            with pytest.raises(type(entry.error)):
                entry.read()
            results.append((entry.path, type(entry.error)))
        else:
            results.append((entry.path, entry.read()))
    return results


def patch_zip_headers(data: bytes, name: bytes, local: dict[int, bytes], central: dict[int, bytes]) -> bytes:
    """Overwrite fields (offset -> bytes) in the local and central headers of entry ``name``."""
    patched = bytearray(data)
    for signature, fields, name_at in ((b"PK\x03\x04", local, 30), (b"PK\x01\x02", central, 46)):
        position = patched.find(signature)
        while position >= 0:
            if patched[position + name_at : position + name_at + len(name)] == name:
                for offset, value in fields.items():
                    patched[position + offset : position + offset + len(value)] = value
            position = patched.find(signature, position + 4)
    return bytes(patched)


# --- detect_source_kind ---------------------------------------------------------------


def test_detects_archive_kinds_by_magic():
    assert detect_source_kind(make_zip([("a.jpg", b"x")])[:512]) == "zip"
    assert detect_source_kind(make_zip([])) == "zip"  # an empty zip is only its end record
    assert detect_source_kind(make_archive("tar", [("a.jpg", b"x")])[:512]) == "tar"
    assert detect_source_kind(make_archive("tar.gz", [("a.jpg", b"x")])[:512]) == "tar.gz"
    assert detect_source_kind(make_tar([tar_member("a.jpg", b"x")], fmt=tarfile.USTAR_FORMAT)[:512]) == "tar"


def test_detects_images_by_magic():
    assert detect_source_kind(JPEG_HEAD) == "image"
    assert detect_source_kind(b"\x89PNG\r\n\x1a\n" + bytes(100), "photo.png") == "image"


def test_magic_wins_over_the_filename():
    assert detect_source_kind(JPEG_HEAD, "archive.zip") == "image"
    assert detect_source_kind(make_archive("tar", [("a.jpg", b"x")])[:512], "photo.jpg") == "tar"


def test_tar_whose_first_name_looks_like_an_image_signature_is_a_tar():
    head = make_archive("tar", [("BM_holiday.bmp", b"x")])[:512]
    assert head.startswith(b"BM")
    assert detect_source_kind(head) == "tar"


def test_zip_name_is_a_hint_when_no_magic_matches():
    prefixed = b"MZ" + bytes(1000) + make_zip([("a.jpg", b"data")])  # self-extracting layout
    assert detect_source_kind(prefixed[:512], "photos.ZIP") == "zip"
    assert read_all(prefixed, "zip") == [("a.jpg", b"data")]
    with pytest.raises(UnsupportedMediaType):
        detect_source_kind(prefixed[:512], "photos.bin")


@pytest.mark.parametrize(
    "head", [b"", b"hello", bz2.compress(b"x" * 100), b"7z\xbc\xaf\x27\x1c" + bytes(50), bytes(1024)]
)
def test_unknown_kinds_are_unsupported_media(head):
    with pytest.raises(UnsupportedMediaType):
        detect_source_kind(head, None)


# --- reading --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ARCHIVE_KINDS)
def test_reads_files_in_order_with_normalised_paths(kind):
    files = [("a.jpg", b"one"), ("./x//b.png", b"two"), ("x/y/c.tif", b""), ("deep\\win\\d.bmp", b"four")]
    assert read_all(make_archive(kind, files), kind) == [
        ("a.jpg", b"one"),
        ("x/b.png", b"two"),
        ("x/y/c.tif", b""),
        ("deep/win/d.bmp", b"four"),
    ]


@pytest.mark.parametrize("kind", ARCHIVE_KINDS)
def test_directories_and_metadata_are_skipped(kind):
    files = [
        ("photos/", b""),
        ("photos/a.jpg", b"a"),
        ("__MACOSX/photos/._a.jpg", b"resource fork"),
        ("photos/._a.jpg", b"appledouble"),
        ("photos/.DS_Store", b"finder"),
        ("photos/Thumbs.db", b"windows"),
        ("photos/THUMBS.DB", b"windows"),
        ("photos/notes.txt", b"text"),
    ]
    if kind != "zip":
        members = [tar_member("photos", kind=tarfile.DIRTYPE)] + [tar_member(n, d) for n, d in files[1:]]
        data = make_tar(members, gz=kind == "tar.gz")
    else:
        data = make_zip(files)
    # Non-images are still yielded: they fail later, at decode time, as item errors.
    assert read_all(data, kind) == [("photos/a.jpg", b"a"), ("photos/notes.txt", b"text")]


@pytest.mark.parametrize("kind", ARCHIVE_KINDS)
def test_entries_report_declared_size(kind):
    entries = list(iter_entries(io.BytesIO(make_archive(kind, [("a.jpg", b"12345")])), kind, LIMITS))
    assert [(entry.path, entry.size, entry.error) for entry in entries] == [("a.jpg", 5, None)]


@pytest.mark.parametrize("kind", ARCHIVE_KINDS)
def test_duplicate_paths_are_kept_with_a_numbered_suffix(kind):
    files = [("a/x.jpg", b"1"), ("a/x.jpg", b"2"), ("a/x.jpg", b"3"), ("a/X.jpg", b"4")]
    with pytest.warns(UserWarning) if kind == "zip" else _no_warning():
        data = make_archive(kind, files)
    assert read_all(data, kind) == [("a/x.jpg", b"1"), ("a/x (2).jpg", b"2"), ("a/x (3).jpg", b"3"), ("a/X.jpg", b"4")]


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_utf8_names_are_kept():
    assert read_all(make_zip([("café/naïve.jpg", b"x")]), "zip") == [("café/naïve.jpg", b"x")]
    tar = make_archive("tar", [("日本/写真.jpg", b"y")])
    assert read_all(tar, "tar") == [("日本/写真.jpg", b"y")]


def test_iter_entries_rejects_unknown_kind():
    with pytest.raises(ValueError):
        iter_entries(io.BytesIO(b""), "image", LIMITS)


def test_empty_archives_yield_nothing():
    assert read_all(make_zip([]), "zip") == []
    assert read_all(make_tar([]), "tar") == []
    assert read_all(make_tar([], gz=True), "tar.gz") == []


# --- unsafe entries -------------------------------------------------------------------


UNSAFE_NAMES = [
    "/etc/passwd.jpg",
    "../escape.jpg",
    "a/../../escape.jpg",
    "a/b/../c.jpg",
    "..\\escape.jpg",
    "\\\\server\\share\\x.jpg",
    "C:/Windows/x.jpg",
    "c:\\x.jpg",
    "bad\nname.jpg",
    "bell\x07.jpg",
]


@pytest.mark.parametrize("kind", ARCHIVE_KINDS)
@pytest.mark.parametrize("name", UNSAFE_NAMES)
def test_unsafe_paths_are_yielded_as_errors_and_never_read(kind, name):
    data = make_archive(kind, [(name, b"secret"), ("ok.jpg", b"fine")])
    entries = read_all(data, kind)
    assert entries == [(name, UnsafeEntry), ("ok.jpg", b"fine")]


def test_zip_name_with_nul_byte_is_unsafe():
    data = patch_zip_headers(make_zip([("evilX.jpg", b"x")]), b"evilX.jpg", {30 + 4: b"\x00"}, {46 + 4: b"\x00"})
    [(path, error)] = read_all(data, "zip")
    assert error is UnsafeEntry and path == "evil\x00.jpg"


def test_zip_name_that_is_not_utf8_is_unsafe_and_shown_with_replacement():
    data = make_zip([("badX.jpg", b"x"), ("good.jpg", b"y")])
    data = patch_zip_headers(data, b"badX.jpg", {30 + 3: b"\xff"}, {46 + 3: b"\xff"})
    entries = list(iter_entries(io.BytesIO(data), "zip", LIMITS))
    assert entries[0].path == "bad\ufffd.jpg"
    assert isinstance(entries[0].error, UnsafeEntry) and "bad\ufffd.jpg" in entries[0].error.message
    assert entries[1].read() == b"y"


def test_unflagged_zip_name_with_valid_utf8_bytes_is_accepted():
    raw = "é".encode()  # two bytes, written without the UTF-8 flag
    data = patch_zip_headers(make_zip([("aXY.jpg", b"x")]), b"aXY.jpg", {31: raw}, {47: raw})
    assert read_all(data, "zip") == [("aé.jpg", b"x")]


def test_tar_name_that_is_not_utf8_is_unsafe():
    data = make_tar([tar_member("bad\udcff.jpg", b"x"), tar_member("good.jpg", b"y")])
    assert b"bad\xff.jpg" in data
    assert read_all(data, "tar") == [("bad\ufffd.jpg", UnsafeEntry), ("good.jpg", b"y")]


@pytest.mark.parametrize(
    "mode", [stat.S_IFLNK | 0o777, stat.S_IFCHR | 0o644, stat.S_IFIFO | 0o644, stat.S_IFSOCK | 0o644]
)
def test_zip_links_and_special_files_are_unsafe(mode):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("link.jpg")
        info.create_system = 3
        info.external_attr = mode << 16
        archive.writestr(info, "/etc/passwd")
        archive.writestr("ok.jpg", b"fine")
    assert read_all(buffer.getvalue(), "zip") == [("link.jpg", UnsafeEntry), ("ok.jpg", b"fine")]
    (rejected, _) = iter_entries(io.BytesIO(buffer.getvalue()), "zip", LIMITS)
    assert rejected.error is not None and rejected.error.message.startswith("link.jpg: ")  # as tar's do


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    "member",
    [
        tar_member("sym.jpg", kind=tarfile.SYMTYPE, linkname="/etc/passwd"),
        tar_member("hard.jpg", kind=tarfile.LNKTYPE, linkname="ok.jpg"),
        tar_member("dev.jpg", kind=tarfile.CHRTYPE, devmajor=1, devminor=3),
        tar_member("blk.jpg", kind=tarfile.BLKTYPE, devmajor=8, devminor=0),
        tar_member("pipe.jpg", kind=tarfile.FIFOTYPE),
    ],
    ids=["symlink", "hardlink", "chardev", "blockdev", "fifo"],
)
def test_tar_links_and_special_files_are_unsafe(member, gz):
    data = make_tar([tar_member("ok.jpg", b"fine"), member], gz=gz)
    kind = "tar.gz" if gz else "tar"
    assert read_all(data, kind) == [("ok.jpg", b"fine"), (member[0].name, UnsafeEntry)]


def test_encrypted_zip_entry_is_unsupported():
    data = make_zip([("secret.jpg", b"x" * 50), ("ok.jpg", b"y")])
    data = patch_zip_headers(data, b"secret.jpg", {6: b"\x01\x00"}, {8: b"\x01\x00"})
    assert read_all(data, "zip") == [("secret.jpg", UnsupportedFormat), ("ok.jpg", b"y")]


def test_unknown_zip_compression_method_is_unsupported():
    data = make_zip([("deflate64.jpg", b"x" * 50), ("ok.jpg", b"y")])
    data = patch_zip_headers(data, b"deflate64.jpg", {8: struct.pack("<H", 9)}, {10: struct.pack("<H", 9)})
    assert read_all(data, "zip") == [("deflate64.jpg", UnsupportedFormat), ("ok.jpg", b"y")]


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_standard_zip_methods_are_read(method):
    assert read_all(make_zip([("a.jpg", b"abc" * 100)], method=method), "zip") == [("a.jpg", b"abc" * 100)]


# --- size and bomb limits -------------------------------------------------------------


@pytest.mark.parametrize("kind", ARCHIVE_KINDS)
def test_entry_declared_too_large_is_rejected_before_reading(kind):
    data = make_archive(kind, [("big.jpg", b"x" * 101), ("small.jpg", b"y" * 100)])
    limits = Limits(max_entry_bytes=100)
    entries = list(iter_entries(io.BytesIO(data), kind, limits))
    assert isinstance(entries[0].error, EntryTooLarge) and entries[0].size == 101


@pytest.mark.parametrize("kind", ARCHIVE_KINDS)
def test_entry_size_limit_keeps_entries_at_the_limit(kind):
    data = make_archive(kind, [("big.jpg", b"x" * 101), ("small.jpg", b"y" * 100)])
    assert read_all(data, kind, Limits(max_entry_bytes=100)) == [("big.jpg", EntryTooLarge), ("small.jpg", b"y" * 100)]


def test_highly_compressed_zip_entry_is_refused_as_a_bomb():
    bomb = bytes(RATIO_CHECK_MIN_BYTES * 2)  # zeros deflate about 1000:1
    data = make_zip([("bomb.bmp", bomb), ("ok.jpg", b"fine")])
    entries = list(iter_entries(io.BytesIO(data), "zip", LIMITS))
    assert isinstance(entries[0].error, EntryTooLarge)
    assert entries[0].error.details["reason"] == "compression_ratio"
    assert entries[1].read() == b"fine"
    # A generous ratio lets the same entry through.
    assert read_all(data, "zip", Limits(max_compression_ratio=5000))[0] == ("bomb.bmp", bomb)


def test_small_entries_are_not_ratio_checked():
    blank = bytes(RATIO_CHECK_MIN_BYTES - 1)
    assert read_all(make_zip([("blank.bmp", blank)]), "zip") == [("blank.bmp", blank)]


def test_zip_entry_holding_more_than_it_declares_is_corrupt():
    # The header claims 10 bytes; the deflated data expands to 100 000.
    data = make_zip([("liar.bmp", b"z" * 100_000), ("ok.jpg", b"fine")])
    size_field = struct.pack("<I", 10)
    data = patch_zip_headers(data, b"liar.bmp", {22: size_field}, {24: size_field})
    entries = list(iter_entries(io.BytesIO(data), "zip", LIMITS))
    assert entries[0].size == 10
    with pytest.raises(CorruptArchive):
        entries[0].read()
    assert entries[1].read() == b"fine"


@pytest.mark.parametrize("kind", ARCHIVE_KINDS)
def test_entry_count_limit_raises_at_the_crossing_entry(kind):
    files = [(f"{index}.jpg", b"x") for index in range(5)] + [("sub/", b"")] * (kind == "zip")
    data = make_archive(kind, files)
    yielded = []
    with pytest.raises(ArchiveLimitExceeded):
        for entry in iter_entries(io.BytesIO(data), kind, Limits(max_entries=3)):
            yielded.append((entry.path, entry.read()))
    assert yielded == [("0.jpg", b"x"), ("1.jpg", b"x"), ("2.jpg", b"x")]
    assert len(read_all(data, kind, Limits(max_entries=5))) == 5


def test_zip_directory_far_beyond_the_entry_limit_is_refused_before_loading():
    data = make_zip([(f"{index}.jpg", b"x") for index in range(7)])
    entries = iter_entries(io.BytesIO(data), "zip", Limits(max_entries=2))
    with pytest.raises(ArchiveLimitExceeded):
        next(entries)


def test_zip_expanded_size_limit_raises_at_the_crossing_entry():
    data = make_zip([("a.jpg", b"a" * 100), ("b.jpg", b"b" * 100), ("c.jpg", b"c" * 100)])
    yielded = []
    with pytest.raises(ArchiveLimitExceeded):
        for entry in iter_entries(io.BytesIO(data), "zip", Limits(max_expanded_bytes=250)):
            yielded.append(entry.read())
    assert yielded == [b"a" * 100, b"b" * 100]
    assert len(read_all(data, "zip", Limits(max_expanded_bytes=300))) == 3


@pytest.mark.parametrize("kind", ["tar", "tar.gz"])
def test_tar_expanded_size_counts_the_whole_stream(kind):
    # Each member takes a 512-byte header and a 512-byte data block: 1024, 2048, 3072.
    data = make_archive(kind, [("a.jpg", b"a" * 100), ("b.jpg", b"b" * 100), ("c.jpg", b"c" * 100)])
    yielded = []
    with pytest.raises(ArchiveLimitExceeded):
        for entry in iter_entries(io.BytesIO(data), kind, Limits(max_expanded_bytes=2500)):
            yielded.append(entry.read())
    assert yielded == [b"a" * 100, b"b" * 100]


def test_skipped_tar_members_count_towards_the_expanded_size():
    members = [tar_member("__MACOSX/._big.jpg", b"j" * 5000), tar_member("a.jpg", b"a")]
    with pytest.raises(ArchiveLimitExceeded):
        read_all(make_tar(members, gz=True), "tar.gz", Limits(max_expanded_bytes=4000))


def test_oversized_tar_header_is_refused_without_buffering_it():
    comment = "x" * (TAR_HEADER_ALLOWANCE * 4)
    member = tar_member("a.jpg", b"a")
    member[0].pax_headers = {"comment": comment}
    data = make_tar([member], gz=True, fmt=tarfile.PAX_FORMAT)
    del comment, member
    tracemalloc.start()
    try:
        with pytest.raises(CorruptArchive):
            read_all(data, "tar.gz")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < TAR_HEADER_ALLOWANCE * 3


def test_long_tar_names_within_the_allowance_are_read():
    name = "d/" * 200 + "photo.jpg"
    assert read_all(make_tar([tar_member(name, b"x")], fmt=tarfile.PAX_FORMAT), "tar") == [(name, b"x")]
    assert read_all(make_tar([tar_member(name, b"x")], fmt=tarfile.GNU_FORMAT), "tar") == [(name, b"x")]


# --- damaged archives -----------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"PK\x03\x04" + bytes(100), b"not a zip at all" * 10])
def test_unreadable_zip_is_corrupt(data):
    with pytest.raises(CorruptArchive):
        list(iter_entries(io.BytesIO(data), "zip", LIMITS))


def test_truncated_zip_is_corrupt():
    data = make_zip([("a.jpg", b"a" * 1000), ("b.jpg", b"b" * 1000)])
    with pytest.raises(CorruptArchive):
        read_all(data[: len(data) - 30], "zip")


def test_damaged_zip_entry_fails_alone():
    payload = bytes(range(256)) * 20
    data = bytearray(make_zip([("a.jpg", payload), ("b.jpg", b"fine")], method=zipfile.ZIP_STORED))
    start = data.find(payload[:64])
    data[start + 100] ^= 0xFF  # the CRC no longer matches
    entries = list(iter_entries(io.BytesIO(bytes(data)), "zip", LIMITS))
    with pytest.raises(CorruptArchive):
        entries[0].read()
    assert entries[1].read() == b"fine"


@pytest.mark.parametrize("kind", ["tar", "tar.gz"])
def test_tar_truncated_inside_member_data_is_corrupt(kind):
    raw = make_tar([tar_member("a.jpg", b"a" * 600), tar_member("b.jpg", b"b" * 5000)])
    cut = raw[: 512 + 1024 + 512 + 2000]  # a.jpg whole, b.jpg's data cut short
    data = gzip.compress(cut) if kind == "tar.gz" else cut
    entries = iter_entries(io.BytesIO(data), kind, LIMITS)
    assert next(entries).read() == b"a" * 600
    with pytest.raises(CorruptArchive):
        next(entries).read()


@pytest.mark.parametrize("kind", ["tar", "tar.gz"])
def test_tar_without_end_marker_is_corrupt(kind):
    raw = make_tar([tar_member("a.jpg", b"a" * 600), tar_member("b.jpg", b"b" * 100)])
    cut = raw[: 512 + 1024]  # ends right after a.jpg: no further header, no end blocks
    data = gzip.compress(cut) if kind == "tar.gz" else cut
    entries = iter_entries(io.BytesIO(data), kind, LIMITS)
    assert next(entries).read() == b"a" * 600
    with pytest.raises(CorruptArchive):
        next(entries)


def test_tar_with_garbage_between_members_is_corrupt():
    raw = make_tar([tar_member("a.jpg", b"a" * 600)])
    data = raw[: 512 + 1024] + b"\x42" * 512 + raw[512 + 1024 :]
    entries = iter_entries(io.BytesIO(data), "tar", LIMITS)
    assert next(entries).read() == b"a" * 600
    with pytest.raises(CorruptArchive):
        next(entries)


def test_truncated_gzip_stream_is_corrupt():
    data = make_archive("tar.gz", [("a.jpg", bytes(range(256)) * 40)])
    with pytest.raises(CorruptArchive):
        read_all(data[: len(data) // 2], "tar.gz")


def test_trailing_bytes_after_the_tar_end_are_ignored():
    data = make_archive("tar", [("a.jpg", b"a")]) + b"trailing junk"
    assert read_all(data, "tar") == [("a.jpg", b"a")]


@pytest.mark.parametrize("data", [b"", b"just text" * 100, gzip.compress(b"not a tar" * 100)])
def test_unreadable_tar_is_corrupt(data):
    kind = "tar.gz" if data[:2] == b"\x1f\x8b" else "tar"
    with pytest.raises(CorruptArchive):
        list(iter_entries(io.BytesIO(data), kind, LIMITS))


def test_gzip_that_is_not_gzip_is_corrupt():
    with pytest.raises(CorruptArchive):
        list(iter_entries(io.BytesIO(b"\x1f\x8bnot really gzip" * 10), "tar.gz", LIMITS))


# --- streaming contract ---------------------------------------------------------------


def test_tar_entry_cannot_be_read_after_the_stream_moved_on():
    data = make_archive("tar", [("a.jpg", b"a"), ("b.jpg", b"b")])
    entries = iter_entries(io.BytesIO(data), "tar", LIMITS)
    first = next(entries)
    second = next(entries)
    with pytest.raises(RuntimeError):
        first.read()
    assert second.read() == b"b"
    with pytest.raises(RuntimeError):
        second.read()


def test_unread_tar_entries_are_skipped():
    data = make_archive("tar.gz", [("a.jpg", b"a" * 3000), ("b.jpg", b"b")])
    entries = list(iter_entries(io.BytesIO(data), "tar.gz", LIMITS))
    assert [entry.path for entry in entries] == ["a.jpg", "b.jpg"]


def test_zip_entries_can_be_read_in_any_order():
    entries = list(iter_entries(io.BytesIO(make_zip([("a.jpg", b"a"), ("b.jpg", b"b")])), "zip", LIMITS))
    assert [entries[1].read(), entries[0].read(), entries[0].read()] == [b"b", b"a", b"a"]


def test_rejected_entry_read_raises_its_error():
    entry = ArchiveEntry(path="../x", size=1, error=UnsafeEntry("'..' in the path"))
    with pytest.raises(UnsafeEntry):
        entry.read()


# --- output names ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, expected",
    [
        ("a.png", "a.jpg"),
        ("dir/sub/photo.TIFF", "dir/sub/photo.jpg"),
        ("photo.jpg", "photo.jpg"),
        ("archive.tar.png", "archive.tar.jpg"),
        ("README", "README.jpg"),
        ("dir/.hidden", "dir/.hidden.jpg"),
    ],
)
def test_output_name_replaces_the_extension(path, expected):
    assert output_name(path) == expected


def test_output_names_resolve_clashes_case_insensitively():
    names = OutputNames()
    paths = ["a.png", "a.tif", "A.jpeg", "a (2).jpg", "dir/a.png", "DIR/A.bmp"]
    assert [names.allocate(p) for p in paths] == [
        "a.jpg",
        "a (2).jpg",
        "A (3).jpg",
        "a (2) (2).jpg",
        "dir/a.jpg",
        "DIR/A (2).jpg",
    ]


def test_output_names_allocate_while_streaming():
    names = OutputNames()
    assert [names.allocate("x.png"), names.allocate("x.gif"), names.allocate("y.png")] == [
        "x.jpg",
        "x (2).jpg",
        "y.jpg",
    ]


def test_unique_names_are_case_sensitive_by_default():
    names = UniqueNames()
    assert [names.claim("a.jpg"), names.claim("A.jpg"), names.claim("a.jpg")] == ["a.jpg", "A.jpg", "a (2).jpg"]
