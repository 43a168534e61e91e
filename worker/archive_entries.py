"""Streaming, size-bounded, path-safe reading of zip, tar and tar.gz archives, as the expander does.

``iter_entries`` yields one ``ArchiveEntry`` per file. Memory stays bounded whatever the
archive size: entries are read one at a time, each capped at ``limits.max_entry_bytes``,
and nothing is kept per entry except its name (for de-duplication).

Rules (each rejected entry is yielded with ``error`` set and is never read):

* directories and metadata (``__MACOSX/``, ``.DS_Store``, ``Thumbs.db``, AppleDouble ``._*``)
  are skipped silently;
* backslashes count as folder separators; absolute paths, drive letters, ``..`` components,
  control characters and names that are not valid UTF-8 -> ``UnsafeEntry``;
* symlinks, hardlinks, devices, fifos and other non-regular members -> ``UnsafeEntry``;
* encrypted zip entries, unknown zip compression methods, sparse tar members
  -> ``UnsupportedFormat``;
* a declared size above ``max_entry_bytes``, or a zip entry of at least 1 MiB expanding more
  than ``max_compression_ratio`` times -> ``EntryTooLarge``.

Whole-archive limits raise ``ArchiveLimitExceeded`` at the entry that crosses them (entries
yielded before stay valid): more than ``max_entries`` yielded entries, or more than
``max_expanded_bytes`` uncompressed bytes (zip: the declared sizes of the entries yielded for
reading; tar: the uncompressed tar stream, headers and skipped members included).

Declared sizes are verified while reading: an entry holding more or fewer bytes than its
header declares raises ``CorruptArchive``; since the zip ratio check accepts a declared size
only when it is within the ratio of the compressed size, that also enforces the ratio.
Damaged archives raise ``CorruptArchive`` where the damage is met.

A path repeated inside one archive is kept: the later entry gets `` (2)``, `` (3)``, ...
before its extension, so every yielded path is unique. The rules shared by both formats are
:mod:`worker.archive_rules`.
"""

from __future__ import annotations

import gzip
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO, Self, cast

from shared.errors import (
    ArchiveLimitExceeded,
    ColorizeError,
    CorruptArchive,
    EntryTooLarge,
    ItemError,
    UnsafeEntry,
    UnsupportedFormat,
)
from shared.jobs.entry_names import UniqueNames
from shared.jobs.source_kinds import ARCHIVE_KINDS
from shared.setting_types import Limits
from shared.storage.item_inputs import ItemInput, ZipMember
from worker.archive_rules import (
    check_expanded,
    check_name,
    count_entry,
    is_junk,
    library_call,
    read_declared,
    size_error,
)

# Entries smaller than this are too small to be a bomb, however well they compress
# (a blank BMP compresses a thousandfold).
RATIO_CHECK_MIN_BYTES = 1024**2

# zipfile loads the whole central directory into memory, so its size is checked first.
# A folder entry and an AppleDouble twin per file are common, hence room for 3 members
# per allowed entry; 1 KiB per member is far above real name + extra-field lengths.
_ZIP_MEMBERS_PER_ENTRY = 3
_ZIP_DIRECTORY_BYTES_PER_MEMBER = 1024

# Real tar headers (pax records, GNU long names) are a few KiB; tarfile reads each into
# memory at once, so the stream may not run further than this past a member's data.
TAR_HEADER_ALLOWANCE = 1024**2

# zipfile's end-of-directory reader and header layout, and tarfile's EOFHeaderError: used
# below, but undocumented, and so left out of typeshed.
_zipfile: Any = zipfile
_tarfile: Any = tarfile

_SUPPORTED_ZIP_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA})


@dataclass
class ArchiveEntry:
    """One file of an archive: a normalised relative POSIX ``path`` (the raw name when
    rejected), the declared uncompressed ``size`` and, for a rejected entry, its ``error``.
    A zip entry also tells where it lies in the archive (``location``): it can be read later,
    by range, without the directory."""

    path: str
    size: int | None
    error: ItemError | None = None
    location: ItemInput | None = None
    _reader: Callable[[bool], bytes] | None = field(default=None, repr=False, compare=False)

    def read(self, image_only: bool = False) -> bytes:
        """The entry's bytes, at most ``limits.max_entry_bytes``; ``image_only``: refused with
        ``UnsupportedFormat`` from its first bytes unless they start an image.

        Raises the entry's ``error`` when it was rejected, ``EntryTooLarge``,
        ``CorruptArchive`` or ``UnsupportedFormat`` while reading. Tar entries come from a
        forward-only stream: read each one, once, before asking for the next.
        """
        if self.error is not None:
            raise self.error
        if self._reader is None:
            raise RuntimeError(f"entry {self.path!r} has no data to read")
        return self._reader(image_only)


def iter_entries(fileobj: BinaryIO, kind: str, limits: Limits) -> Iterator[ArchiveEntry]:
    """Yield the files of an archive one by one, applying the rules in the module docstring.

    ``zip`` needs a seekable ``fileobj``; ``tar`` and ``tar.gz`` read it forward only.
    """
    if kind == "zip":
        return _iter_zip(fileobj, limits)
    if kind in ("tar", "tar.gz"):
        return _iter_tar(fileobj, kind == "tar.gz", limits)
    raise ValueError(f"not an archive kind: {kind!r} (expected one of {ARCHIVE_KINDS})")


# --- zip ------------------------------------------------------------------------------


def _iter_zip(fileobj: BinaryIO, limits: Limits) -> Iterator[ArchiveEntry]:
    _check_zip_directory(fileobj, limits)
    # Not closed here: it holds no resource of its own (the caller owns fileobj), and zip
    # entries stay readable, in any order, for as long as the caller keeps fileobj open.
    archive = library_call(lambda: zipfile.ZipFile(fileobj), "cannot open zip")
    paths = UniqueNames()
    count = 0
    expanded = 0
    ends = _member_ends(archive)
    for info in archive.infolist():
        entry = _zip_entry(archive, info, ends[info.header_offset], limits)
        if entry is None:
            continue
        count = count_entry(count, limits)
        if entry.error is None:
            expanded += info.file_size
            check_expanded(expanded, limits)
            entry.path = paths.claim(entry.path)
        yield entry


def _check_zip_directory(fileobj: BinaryIO, limits: Limits) -> None:
    """Refuse a central directory too big to load, before zipfile loads it."""
    # zipfile's own end-of-directory reader (zip64 aware); the public API offers no way to
    # see the directory size without loading the whole directory.
    end = library_call(lambda: _zipfile._EndRecData(fileobj), "cannot read zip directory")
    if end is None:
        raise CorruptArchive("not a zip archive: no end of central directory record")
    members = end[_zipfile._ECD_ENTRIES_TOTAL]
    directory_bytes = end[_zipfile._ECD_SIZE]
    max_members = _ZIP_MEMBERS_PER_ENTRY * limits.max_entries
    if members > max_members or directory_bytes > max_members * _ZIP_DIRECTORY_BYTES_PER_MEMBER:
        raise ArchiveLimitExceeded(
            f"zip directory lists {members} members in {directory_bytes} bytes; "
            f"at most {limits.max_entries} files are allowed",
            max_entries=limits.max_entries,
        )


def _member_ends(archive: zipfile.ZipFile) -> dict[int, int]:
    """Where each member's bytes (local header, data, descriptor) end: at the next member, or
    at the central directory."""
    starts = sorted({info.header_offset for info in archive.infolist()})
    return dict(zip(starts, starts[1:] + [archive.start_dir]))


def _zip_location(info: zipfile.ZipInfo, end: int) -> ItemInput:
    # The local header repeats the name and has an extra field of its own: at most 64 KiB each.
    longest = _zipfile.sizeFileHeader + 2 * 0xFFFF + info.compress_size
    member = ZipMember(
        method=info.compress_type,
        compressed_size=info.compress_size,
        size=info.file_size,
        crc=info.CRC,
        flags=info.flag_bits,
    )
    return ItemInput(
        object=None, offset=info.header_offset, length=max(0, min(end - info.header_offset, longest)), member=member
    )


def _zip_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, end: int, limits: Limits) -> ArchiveEntry | None:
    if info.flag_bits & 0x800:
        raw_name = info.orig_filename.encode("utf-8")
    else:  # zipfile decoded the name as cp437, which maps every byte; recover the bytes
        raw_name = info.orig_filename.encode("cp437")
    mode = info.external_attr >> 16
    is_dir = info.orig_filename.endswith(("/", "\\")) or stat.S_ISDIR(mode)
    name, error = check_name(raw_name)
    if is_dir or is_junk(name):
        return None
    size = info.file_size
    if error is None:
        error = _member_type_error(name, mode)
    if error is None and info.flag_bits & 0x1:
        error = UnsupportedFormat(f"{name}: encrypted zip entries are not supported", path=name)
    if error is None and info.compress_type not in _SUPPORTED_ZIP_METHODS:
        error = UnsupportedFormat(
            f"{name}: zip compression method {info.compress_type} is not supported",
            path=name,
            method=info.compress_type,
        )
    if error is None:
        error = size_error(name, size, limits) or _ratio_error(name, size, info.compress_size, limits)
    if error is not None:
        return ArchiveEntry(path=name, size=size, error=error)
    return ArchiveEntry(
        path=name,
        size=size,
        location=_zip_location(info, end),
        _reader=lambda image_only: _read_zip_member(archive, info, limits, image_only),
    )


def _member_type_error(name: str, mode: int) -> ItemError | None:
    kind = stat.S_IFMT(mode)
    if kind in (0, stat.S_IFREG):
        return None
    label = "symlink" if kind == stat.S_IFLNK else "special file"
    return UnsafeEntry(f"{name}: {label} entries are not allowed", path=name)


def _ratio_error(name: str, size: int, compressed: int, limits: Limits) -> ItemError | None:
    if size < RATIO_CHECK_MIN_BYTES or size <= limits.max_compression_ratio * compressed:
        return None
    ratio = size / compressed if compressed else float("inf")
    return EntryTooLarge(
        f"{name}: expands {ratio:.0f} times (limit {limits.max_compression_ratio:g}); refused as a likely zip bomb",
        path=name,
        reason="compression_ratio",
        max_compression_ratio=limits.max_compression_ratio,
    )


def _read_zip_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: Limits, image_only: bool) -> bytes:
    def read() -> bytes:
        with archive.open(info) as stream:
            return read_declared(stream, info.filename, info.file_size, limits, image_only)

    try:
        return read()
    except NotImplementedError as exc:  # a compression method this Python lacks
        raise UnsupportedFormat(f"{info.filename}: {exc}", path=info.filename) from exc
    except (ColorizeError, MemoryError):
        raise
    except Exception as exc:
        raise CorruptArchive(f"{info.filename}: {exc}", path=info.filename) from exc


# --- tar ------------------------------------------------------------------------------


class _StrictTarInfo(tarfile.TarInfo):
    """tarfile ends silently at a damaged or missing header after the first member; a
    stream must end with the end-of-archive block, anything else is damage."""

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> Self:
        try:
            return super().fromtarfile(tarfile_)
        except _tarfile.EOFHeaderError:
            raise
        except tarfile.HeaderError as exc:
            raise CorruptArchive(f"damaged tar header at byte {tarfile_.offset}: {exc}") from exc


class _BoundedStream:
    """The (uncompressed) tar stream, refusing reads more than ``TAR_HEADER_ALLOWANCE``
    past the end of the current member's data, so an oversized header cannot be buffered."""

    def __init__(self, inner: BinaryIO | gzip.GzipFile) -> None:
        self._inner = inner
        self._position = 0
        self.data_end = 0

    def read(self, size: int = -1) -> bytes:
        limit = self.data_end + TAR_HEADER_ALLOWANCE
        if size is None or size < 0 or self._position + size > limit:
            raise CorruptArchive(f"tar header area larger than {TAR_HEADER_ALLOWANCE} bytes")
        data = self._inner.read(size)
        self._position += len(data)
        return data


class _TarCursor:
    """The member whose data the stream is positioned at; only it can be read."""

    def __init__(self) -> None:
        self.current: tarfile.TarInfo | None = None


def _iter_tar(fileobj: BinaryIO, compressed: bool, limits: Limits) -> Iterator[ArchiveEntry]:
    # Decompressing here rather than in tarfile puts _BoundedStream on uncompressed bytes.
    inner: BinaryIO | gzip.GzipFile = gzip.GzipFile(fileobj=fileobj, mode="rb") if compressed else fileobj
    stream = _BoundedStream(inner)
    archive = library_call(
        lambda: tarfile.open(  # noqa: SIM115  # closed in the finally below, after the last member
            fileobj=cast("IO[bytes]", stream),
            mode="r|",
            tarinfo=_StrictTarInfo,
            encoding="utf-8",
            errors="surrogateescape",
        ),
        "cannot open tar",
    )
    cursor = _TarCursor()
    try:
        paths = UniqueNames()
        count = 0
        while True:
            cursor.current = None
            member = library_call(archive.next, "cannot read tar")
            if member is None:
                return
            # tarfile remembers every member for random access a stream never uses.
            archive.members.clear()  # type: ignore[attr-defined]  # TarFile's own, left out of typeshed
            stream.data_end = archive.offset
            check_expanded(archive.offset, limits)
            entry = _tar_entry(archive, member, cursor, limits)
            if entry is None:
                continue
            count = count_entry(count, limits)
            if entry.error is None:
                entry.path = paths.claim(entry.path)
            cursor.current = member
            yield entry
    finally:
        cursor.current = None
        archive.close()
        if compressed:
            inner.close()


def _tar_entry(
    archive: tarfile.TarFile, member: tarfile.TarInfo, cursor: _TarCursor, limits: Limits
) -> ArchiveEntry | None:
    raw_name = member.name.encode("utf-8", "surrogateescape")
    name, error = check_name(raw_name)
    if member.isdir() or is_junk(name):
        return None
    size = member.size
    if error is None:
        if member.issym() or member.islnk():
            error = UnsafeEntry(f"{name}: links are not allowed", path=name)
        elif not member.isreg():
            error = UnsafeEntry(f"{name}: only regular files are allowed", path=name)
        elif member.issparse():
            error = UnsupportedFormat(f"{name}: sparse tar members are not supported", path=name)
        else:
            error = size_error(name, size, limits)
    if error is not None:
        return ArchiveEntry(path=name, size=size, error=error)
    return ArchiveEntry(
        path=name, size=size, _reader=lambda image_only: _read_tar_member(archive, member, cursor, limits, image_only)
    )


def _read_tar_member(
    archive: tarfile.TarFile, member: tarfile.TarInfo, cursor: _TarCursor, limits: Limits, image_only: bool
) -> bytes:
    if cursor.current is not member:
        raise RuntimeError(f"tar entry {member.name!r} read after the stream moved on, or twice")
    cursor.current = None

    def read() -> bytes:
        stream = archive.extractfile(member)
        if stream is None:
            raise CorruptArchive(f"{member.name}: no data", path=member.name)
        with stream:
            return read_declared(stream, member.name, member.size, limits, image_only)

    return library_call(read, f"cannot read {member.name}")
