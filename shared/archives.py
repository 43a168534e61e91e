"""Streaming, size-bounded, path-safe reading of zip, tar and tar.gz archives.

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
before its extension, so every yielded path is unique.
"""

from __future__ import annotations

import gzip
import re
import stat
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import BinaryIO, Callable, Iterable, Iterator, TypeVar

from shared.errors import (
    ArchiveLimitExceeded,
    ColorizeError,
    CorruptArchive,
    EntryTooLarge,
    ItemError,
    UnsafeEntry,
    UnsupportedFormat,
    UnsupportedMediaType,
)
from shared.imaging import sniff_image_format
from shared.settings import Limits

SOURCE_KINDS: tuple[str, ...] = ("zip", "tar", "tar.gz", "image")
ARCHIVE_KINDS: tuple[str, ...] = ("zip", "tar", "tar.gz")

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

_SUPPORTED_ZIP_METHODS = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
_JUNK_NAMES = frozenset({".ds_store", "thumbs.db"})
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")

_T = TypeVar("_T")


@dataclass
class ArchiveEntry:
    """One file of an archive: a normalised relative POSIX ``path`` (the raw name when
    rejected), the declared uncompressed ``size`` and, for a rejected entry, its ``error``."""

    path: str
    size: int | None
    error: ItemError | None = None
    _reader: Callable[[], bytes] | None = field(default=None, repr=False, compare=False)

    def read(self) -> bytes:
        """The entry's bytes, at most ``limits.max_entry_bytes``.

        Raises the entry's ``error`` when it was rejected, ``EntryTooLarge``,
        ``CorruptArchive`` or ``UnsupportedFormat`` while reading. Tar entries come from a
        forward-only stream: read each one, once, before asking for the next.
        """
        if self.error is not None:
            raise self.error
        if self._reader is None:
            raise RuntimeError(f"entry {self.path!r} has no data to read")
        return self._reader()


def detect_source_kind(head: bytes, filename: str | None = None) -> str:
    """``"zip"``, ``"tar"``, ``"tar.gz"`` or ``"image"`` from the first bytes of an upload.

    Give at least the first 512 bytes (a tar is recognised by its first header block).
    Magic bytes decide; the filename only helps when none match: a ``.zip`` name then
    selects zip, because zip readers find the directory at the end of the file (prefixed
    or self-extracting zips). Anything else raises ``UnsupportedMediaType``.
    """
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return "zip"
    if head[:2] == b"\x1f\x8b":
        return "tar.gz"
    # Before images: a tar starts with its first member's name, which may look like magic
    # bytes ("BM..." reads as a BMP signature).
    if _is_tar_header(head[:tarfile.BLOCKSIZE]):
        return "tar"
    if sniff_image_format(head) is not None:
        return "image"
    if filename is not None and filename.lower().endswith(".zip"):
        return "zip"
    raise UnsupportedMediaType(
        "upload is neither a supported image (JPEG, PNG, BMP, TIFF, WebP, GIF) "
        "nor a zip, tar or tar.gz archive"
    )


def iter_entries(fileobj: BinaryIO, kind: str, limits: Limits) -> Iterator[ArchiveEntry]:
    """Yield the files of an archive one by one, applying the rules in the module docstring.

    ``zip`` needs a seekable ``fileobj``; ``tar`` and ``tar.gz`` read it forward only.
    """
    if kind == "zip":
        return _iter_zip(fileobj, limits)
    if kind in ("tar", "tar.gz"):
        return _iter_tar(fileobj, kind == "tar.gz", limits)
    raise ValueError(f"not an archive kind: {kind!r} (expected one of {ARCHIVE_KINDS})")


def output_name(path: str) -> str:
    """The result path of an entry: same folders, extension replaced by ``.jpg``."""
    pure = PurePosixPath(path)
    if pure.suffix:
        return str(pure.with_suffix(".jpg"))
    return str(pure.with_name(pure.name + ".jpg"))


class UniqueNames:
    """Hands out unique paths while streaming: a taken path gets `` (2)``, `` (3)``, ...
    before its extension. ``case_sensitive=False`` treats ``A.jpg`` and ``a.jpg`` as the
    same name, as Windows and macOS file systems do when a result zip is unpacked."""

    def __init__(self, case_sensitive: bool = True) -> None:
        self._case_sensitive = case_sensitive
        self._taken: set[str] = set()
        self._next_suffix: dict[str, int] = {}

    def claim(self, path: str) -> str:
        candidate = path
        base_key = self._key(path)
        number = self._next_suffix.get(base_key, 2)
        while self._key(candidate) in self._taken:
            candidate = _with_number(path, number)
            number += 1
        self._next_suffix[base_key] = number
        self._taken.add(self._key(candidate))
        return candidate

    def _key(self, path: str) -> str:
        return path if self._case_sensitive else path.casefold()


class OutputNames:
    """Allocates unique result names (``output_name``, case-insensitive) while streaming."""

    def __init__(self) -> None:
        self._names = UniqueNames(case_sensitive=False)

    def allocate(self, path: str) -> str:
        return self._names.claim(output_name(path))


def unique_output_names(paths: Iterable[str]) -> list[str]:
    """``output_name`` of each path, made unique in order (``a.png``, ``a.tif`` -> ``a.jpg``,
    ``a (2).jpg``)."""
    names = OutputNames()
    return [names.allocate(path) for path in paths]


# --- zip ------------------------------------------------------------------------------


def _iter_zip(fileobj: BinaryIO, limits: Limits) -> Iterator[ArchiveEntry]:
    _check_zip_directory(fileobj, limits)
    # Not closed here: it holds no resource of its own (the caller owns fileobj), and zip
    # entries stay readable, in any order, for as long as the caller keeps fileobj open.
    archive = _library_call(lambda: zipfile.ZipFile(fileobj), "cannot open zip")
    paths = UniqueNames()
    count = 0
    expanded = 0
    for info in archive.infolist():
        entry = _zip_entry(archive, info, limits)
        if entry is None:
            continue
        count = _count_entry(count, limits)
        if entry.error is None:
            expanded += info.file_size
            _check_expanded(expanded, limits)
            entry.path = paths.claim(entry.path)
        yield entry


def _check_zip_directory(fileobj: BinaryIO, limits: Limits) -> None:
    """Refuse a central directory too big to load, before zipfile loads it."""
    # zipfile's own end-of-directory reader (zip64 aware); the public API offers no way to
    # see the directory size without loading the whole directory.
    end = _library_call(lambda: zipfile._EndRecData(fileobj), "cannot read zip directory")
    if end is None:
        raise CorruptArchive("not a zip archive: no end of central directory record")
    members = end[zipfile._ECD_ENTRIES_TOTAL]
    directory_bytes = end[zipfile._ECD_SIZE]
    max_members = _ZIP_MEMBERS_PER_ENTRY * limits.max_entries
    if members > max_members or directory_bytes > max_members * _ZIP_DIRECTORY_BYTES_PER_MEMBER:
        raise ArchiveLimitExceeded(
            f"zip directory lists {members} members in {directory_bytes} bytes; "
            f"at most {limits.max_entries} files are allowed",
            max_entries=limits.max_entries,
        )


def _zip_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: Limits) -> ArchiveEntry | None:
    if info.flag_bits & 0x800:
        raw_name = info.orig_filename.encode("utf-8")
    else:  # zipfile decoded the name as cp437, which maps every byte; recover the bytes
        raw_name = info.orig_filename.encode("cp437")
    mode = info.external_attr >> 16
    is_dir = info.orig_filename.endswith(("/", "\\")) or stat.S_ISDIR(mode)
    name, error = _check_name(raw_name)
    if is_dir or _is_junk(name):
        return None
    size = info.file_size
    if error is None:
        error = _member_type_error(mode)
    if error is None and info.flag_bits & 0x1:
        error = UnsupportedFormat(f"{name}: encrypted zip entries are not supported", path=name)
    if error is None and info.compress_type not in _SUPPORTED_ZIP_METHODS:
        error = UnsupportedFormat(
            f"{name}: zip compression method {info.compress_type} is not supported",
            path=name, method=info.compress_type,
        )
    if error is None:
        error = _size_error(name, size, limits) or _ratio_error(name, size, info.compress_size, limits)
    if error is not None:
        return ArchiveEntry(path=name, size=size, error=error)
    return ArchiveEntry(path=name, size=size, _reader=lambda: _read_zip_member(archive, info, limits))


def _member_type_error(mode: int) -> ItemError | None:
    kind = stat.S_IFMT(mode)
    if kind in (0, stat.S_IFREG):
        return None
    label = "symlink" if kind == stat.S_IFLNK else "special file"
    return UnsafeEntry(f"{label} entries are not allowed")


def _ratio_error(name: str, size: int, compressed: int, limits: Limits) -> ItemError | None:
    if size < RATIO_CHECK_MIN_BYTES or size <= limits.max_compression_ratio * compressed:
        return None
    ratio = size / compressed if compressed else float("inf")
    return EntryTooLarge(
        f"{name}: expands {ratio:.0f} times (limit {limits.max_compression_ratio:g}); "
        "refused as a likely zip bomb",
        path=name, reason="compression_ratio", max_compression_ratio=limits.max_compression_ratio,
    )


def _read_zip_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: Limits) -> bytes:
    def read() -> bytes:
        with archive.open(info) as stream:
            return _read_declared(stream, info.filename, info.file_size, limits)

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
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        try:
            return super().fromtarfile(tarfile_)
        except tarfile.EOFHeaderError:
            raise
        except tarfile.HeaderError as exc:
            raise CorruptArchive(f"damaged tar header at byte {tarfile_.offset}: {exc}") from exc


class _BoundedStream:
    """The (uncompressed) tar stream, refusing reads more than ``TAR_HEADER_ALLOWANCE``
    past the end of the current member's data, so an oversized header cannot be buffered."""

    def __init__(self, inner: BinaryIO) -> None:
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
    inner: BinaryIO = gzip.GzipFile(fileobj=fileobj, mode="rb") if compressed else fileobj
    stream = _BoundedStream(inner)
    archive = _library_call(
        lambda: tarfile.open(
            fileobj=stream, mode="r|", tarinfo=_StrictTarInfo, encoding="utf-8", errors="surrogateescape"
        ),
        "cannot open tar",
    )
    cursor = _TarCursor()
    try:
        paths = UniqueNames()
        count = 0
        while True:
            cursor.current = None
            member = _library_call(archive.next, "cannot read tar")
            if member is None:
                return
            # tarfile remembers every member for random access a stream never uses.
            archive.members.clear()
            stream.data_end = archive.offset
            _check_expanded(archive.offset, limits)
            entry = _tar_entry(archive, member, cursor, limits)
            if entry is None:
                continue
            count = _count_entry(count, limits)
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
    name, error = _check_name(raw_name)
    if member.isdir() or _is_junk(name):
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
            error = _size_error(name, size, limits)
    if error is not None:
        return ArchiveEntry(path=name, size=size, error=error)
    return ArchiveEntry(path=name, size=size, _reader=lambda: _read_tar_member(archive, member, cursor, limits))


def _read_tar_member(
    archive: tarfile.TarFile, member: tarfile.TarInfo, cursor: _TarCursor, limits: Limits
) -> bytes:
    if cursor.current is not member:
        raise RuntimeError(f"tar entry {member.name!r} read after the stream moved on, or twice")
    cursor.current = None

    def read() -> bytes:
        stream = archive.extractfile(member)
        if stream is None:
            raise CorruptArchive(f"{member.name}: no data", path=member.name)
        with stream:
            return _read_declared(stream, member.name, member.size, limits)

    return _library_call(read, f"cannot read {member.name}")


# --- shared rules ---------------------------------------------------------------------


def _is_tar_header(block: bytes) -> bool:
    """Whether ``block`` is a tar header with a valid checksum (old V7 tars have no magic)."""
    if len(block) < tarfile.BLOCKSIZE:
        return False
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def _check_name(raw: bytes) -> tuple[str, ItemError | None]:
    """Normalised path (or the raw name, readable, when rejected) and the rejection."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        shown = raw.decode("utf-8", "replace")
        return shown, UnsafeEntry(f"{shown}: file name is not valid UTF-8", path=shown)
    problem = _path_problem(text)
    if problem is not None:
        return text, UnsafeEntry(f"{text!r}: {problem}", path=text)
    return _normalise(text), None


def _path_problem(name: str) -> str | None:
    if _CONTROL_CHARS.search(name):
        return "control characters in the file name"
    slashed = name.replace("\\", "/")
    if slashed.startswith("/"):
        return "absolute path"
    if _DRIVE_LETTER.match(slashed):
        return "drive letter in the path"
    if ".." in slashed.split("/"):
        return "'..' in the path"
    return None


def _normalise(name: str) -> str:
    parts = [part for part in name.replace("\\", "/").split("/") if part not in ("", ".")]
    return "/".join(parts)


def _is_junk(path: str) -> bool:
    parts = [part for part in path.replace("\\", "/").split("/") if part]
    if not parts:
        return True  # "." or "/" alone: nothing to read
    basename = parts[-1]
    return "__MACOSX" in parts or basename.lower() in _JUNK_NAMES or basename.startswith("._")


def _size_error(name: str, size: int, limits: Limits) -> ItemError | None:
    if size <= limits.max_entry_bytes:
        return None
    return EntryTooLarge(
        f"{name}: {size} bytes uncompressed; at most {limits.max_entry_bytes} allowed",
        path=name, size=size, max_entry_bytes=limits.max_entry_bytes,
    )


def _count_entry(count: int, limits: Limits) -> int:
    count += 1
    if count > limits.max_entries:
        raise ArchiveLimitExceeded(
            f"archive holds more than {limits.max_entries} files", max_entries=limits.max_entries
        )
    return count


def _check_expanded(expanded: int, limits: Limits) -> None:
    if expanded > limits.max_expanded_bytes:
        raise ArchiveLimitExceeded(
            f"archive expands to more than {limits.max_expanded_bytes} bytes",
            max_expanded_bytes=limits.max_expanded_bytes,
        )


def _read_declared(stream: BinaryIO, name: str, declared: int, limits: Limits) -> bytes:
    """Read an entry that claims ``declared`` bytes, allocating at most one byte beyond the cap."""
    cap = min(declared, limits.max_entry_bytes)
    data = stream.read(cap + 1)
    if len(data) > limits.max_entry_bytes:
        raise EntryTooLarge(
            f"{name}: more than {limits.max_entry_bytes} bytes uncompressed",
            path=name, max_entry_bytes=limits.max_entry_bytes,
        )
    if len(data) != declared:
        raise CorruptArchive(
            f"{name}: holds {'more' if len(data) > declared else len(data)} bytes "
            f"where its header declares {declared}",
            path=name,
        )
    return data


def _library_call(call: Callable[[], _T], what: str) -> _T:
    """Run a zipfile/tarfile/gzip call on untrusted bytes; whatever they raise is damage."""
    try:
        return call()
    except (ColorizeError, MemoryError):
        raise
    except Exception as exc:  # these libraries signal bad input with many exception types
        raise CorruptArchive(f"{what}: {exc}") from exc


def _with_number(path: str, number: int) -> str:
    pure = PurePosixPath(path)
    return str(pure.with_name(f"{pure.stem} ({number}){pure.suffix}"))
