"""The names of a job's items and results: every name a client gave, cleaned, and made unique.

Every name a client gave (an archive entry's path, a single image's file name) passes through
:func:`clean_path` before it becomes an item's ``path``: what is shown, downloaded and unpacked
is then printable, relative and of a length file systems accept.

Paths inside one archive may repeat; each later one gets `` (2)``, `` (3)``, ... before its
extension. Results are named after their entries with the output format's extension (``.jpg``,
``.png``, ``.webp``), unique case-insensitively (as Windows and macOS file systems compare names
when a result zip is unpacked).
"""

from __future__ import annotations

import unicodedata
from pathlib import PurePosixPath

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
