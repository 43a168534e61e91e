"""An upload as a job's source: which kind it is, and the unique names of its files and results.

Paths inside one archive may repeat; each later one gets `` (2)``, `` (3)``, ... before its
extension. Results are named after their entries with the output format's extension (``.jpg``,
``.png``, ``.webp``), unique case-insensitively (as
Windows and macOS file systems compare names when a result zip is unpacked). Reading an
archive's entries is the worker's (:mod:`worker.archive_entries`).

Every name a client gave (an archive entry's path, a single image's file name) passes through
:func:`clean_path` before it becomes an item's ``path``: what is shown, downloaded and unpacked
is then printable, relative and of a length file systems accept.
"""

from __future__ import annotations

import tarfile
import unicodedata
from pathlib import PurePosixPath

from shared.errors import UnsupportedMediaType
from shared.imaging.formats import sniff_image_format

# "reference": images named by a job's source by reference (shared/storage/sources.py), not sent.
REFERENCE_KIND = "reference"
SOURCE_KINDS: tuple[str, ...] = ("zip", "tar", "tar.gz", "image", REFERENCE_KIND)
ARCHIVE_KINDS: tuple[str, ...] = ("zip", "tar", "tar.gz")


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
    if is_tar_header(head[: tarfile.BLOCKSIZE]):
        return "tar"
    if sniff_image_format(head) is not None:
        return "image"
    if filename is not None and filename.lower().endswith(".zip"):
        return "zip"
    raise UnsupportedMediaType(
        "upload is neither a supported image (JPEG, PNG, BMP, TIFF, WebP, GIF) nor a zip, tar or tar.gz archive"
    )


def is_tar_header(block: bytes) -> bool:
    """Whether ``block`` is a tar header with a valid checksum (old V7 tars have no magic)."""
    if len(block) < tarfile.BLOCKSIZE:
        return False
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


# Unicode categories dropped from names: control characters (Cc) and format characters (Cf:
# bidi overrides such as U+202E, zero-width joiners), which make a name show as another; lone
# surrogates (Cs), which cannot be encoded.
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})
# One folder or file name, in UTF-8 bytes: below the 255 most file systems allow, leaving room
# for " (n)" and ".webp" (UniqueNames, output_name).
MAX_NAME_PART_BYTES = 200
# A whole path; leading folders are dropped past it.
MAX_PATH_BYTES = 1024
# Extensions longer than this are not kept apart when a name is shortened.
_MAX_SUFFIX_CHARS = 16


def clean_path(name: str) -> str:
    """``name`` as a relative path that is safe to show and to unpack: control, format (bidi) and
    surrogate characters removed, ``\\`` read as ``/``, empty, ``.`` and ``..`` parts and the
    spaces around parts dropped, each part shortened to ``MAX_NAME_PART_BYTES`` (its extension
    kept) and leading folders dropped past ``MAX_PATH_BYTES``. Empty when nothing is left."""
    text = "".join(c for c in unicodedata.normalize("NFC", name) if unicodedata.category(c) not in _DROPPED_CATEGORIES)
    parts = [_shortened(part.strip()) for part in text.replace("\\", "/").split("/")]
    parts = [part for part in parts if part not in ("", ".", "..")]
    kept, size = 0, -1  # parts kept from the end, and their bytes joined by "/"
    for part in reversed(parts):
        size += len(part.encode()) + 1
        if kept and size > MAX_PATH_BYTES:
            break
        kept += 1
    return "/".join(parts[len(parts) - kept :])


def clean_filename(name: str | None) -> str | None:
    """The file's own name (:func:`clean_path`, without any folders); None when nothing is left."""
    return clean_path(name).rsplit("/", 1)[-1] or None if name else None


def _shortened(part: str) -> str:
    if len(part.encode()) <= MAX_NAME_PART_BYTES:
        return part
    pure = PurePosixPath(part)
    suffix = pure.suffix if len(pure.suffix) <= _MAX_SUFFIX_CHARS else ""
    stem = part[: len(part) - len(suffix)]
    budget = MAX_NAME_PART_BYTES - len(suffix.encode())
    return stem.encode()[:budget].decode(errors="ignore").rstrip() + suffix


def output_name(path: str, extension: str = ".jpg") -> str:
    """The result path of an entry: same folders, extension replaced by the result's (``.jpg``,
    ``.png`` or ``.webp``: ``shared.imaging.output_options``)."""
    pure = PurePosixPath(path)
    if pure.suffix:
        return str(pure.with_suffix(extension))
    return str(pure.with_name(pure.name + extension))


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

    def __init__(self, extension: str = ".jpg") -> None:
        self._names = UniqueNames(case_sensitive=False)
        self._extension = extension

    def allocate(self, path: str) -> str:
        return self._names.claim(output_name(path, self._extension))


def _with_number(path: str, number: int) -> str:
    pure = PurePosixPath(path)
    return str(pure.with_name(f"{pure.stem} ({number}){pure.suffix}"))
