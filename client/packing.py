"""Folders and several files packed on the fly into one zip, streamed to a temporary file.

Layout: a single folder contributes its contents relative to itself; with several arguments,
each file goes in under its own name and each folder under its own name, so results come
back in the same folder layout. Hidden files and folders (``.DS_Store``, ``.git``) are left
out; everything else goes in, and the service reports what is not an image.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath

# Already-compressed formats are stored: deflating them costs time and saves nothing.
STORED_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".zip", ".gz", ".tgz", ".jp2", ".heic"})


@dataclass(frozen=True)
class PackedFile:
    source: Path
    name: str  # the entry name in the zip, with "/" separators


def plan_entries(paths: Sequence[Path]) -> list[PackedFile]:
    """Every file to pack and its entry name; FileNotFoundError for a path that does not exist."""
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder")
    pairs: Iterable[tuple[Path, PurePath]]
    if len(paths) == 1 and paths[0].is_dir():
        pairs = ((file, file.relative_to(paths[0])) for file in _walk(paths[0]))
    else:
        pairs = _entries_of_several(paths)
    return _unique([(source, PurePosixPath(*relative.parts).as_posix()) for source, relative in pairs])


def pack_zip(
    paths: Sequence[Path],
    directory: Path | None = None,
    on_file: Callable[[PackedFile], None] | None = None,
) -> Path:
    """A temporary zip of ``paths`` (the caller deletes it); files are streamed in, never read whole."""
    entries = plan_entries(paths)
    if not entries:
        raise FileNotFoundError("no files to submit in " + ", ".join(str(p) for p in paths))
    handle, name = tempfile.mkstemp(prefix="colorize-", suffix=".zip", dir=directory)
    os.close(handle)
    target = Path(name)
    try:
        with zipfile.ZipFile(target, "w", allowZip64=True) as archive:
            for entry in entries:
                method = zipfile.ZIP_STORED if entry.source.suffix.lower() in STORED_SUFFIXES else zipfile.ZIP_DEFLATED
                archive.write(entry.source, entry.name, compress_type=method)
                if on_file is not None:
                    on_file(entry)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


def _walk(folder: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root, name)
            if not name.startswith(".") and path.is_file():
                yield path


def _entries_of_several(paths: Iterable[Path]) -> Iterator[tuple[Path, PurePosixPath]]:
    for path in paths:
        if path.is_dir():
            base = path.resolve()
            for file in _walk(path):
                yield file, PurePosixPath(base.name) / file.relative_to(path).as_posix()
        else:
            yield path, PurePosixPath(path.name)


def _unique(pairs: list[tuple[Path, str]]) -> list[PackedFile]:
    """Entry names made unique (case-insensitively, as on the filesystems results land on)."""
    taken: set[str] = set()
    packed = []
    for source, name in pairs:
        candidate, n = name, 2
        while candidate.lower() in taken:
            stem, dot, suffix = name.rpartition(".")
            candidate = f"{stem} ({n}).{suffix}" if dot and "/" not in suffix else f"{name} ({n})"
            n += 1
        taken.add(candidate.lower())
        packed.append(PackedFile(source, candidate))
    return packed
