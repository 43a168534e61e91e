"""The rules every archive entry is held to, whatever the archive format: safe names, sizes and
counts within the limits, and exactly the bytes its header declares."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Protocol, TypeVar, cast

from shared.errors import (
    ArchiveLimitExceeded,
    ColorizeError,
    CorruptArchive,
    EntryTooLarge,
    ItemError,
    UnsafeEntry,
    UnsupportedFormat,
)
from shared.imaging.formats import SUPPORTED_IMAGE_FORMATS, sniff_image_format
from shared.jobs.entry_names import clean_path
from shared.setting_types import Limits

# Enough leading bytes to recognise every image format the decoder accepts.
IMAGE_HEAD_BYTES = 16

_JUNK_NAMES = frozenset({".ds_store", "thumbs.db"})
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")

_T = TypeVar("_T")


def check_name(raw: bytes) -> tuple[str, ItemError | None]:
    """The entry's path, cleaned as every name a client gives (``shared.jobs.entry_names.clean_path``);
    or, when the name is unsafe as it stands, the raw name (readable) and the rejection: such an
    item never has a result, and its name says what was wrong."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        shown = raw.decode("utf-8", "replace")
        return shown, UnsafeEntry(f"{shown}: file name is not valid UTF-8", path=shown)
    problem = _path_problem(text)
    if problem is not None:
        return text, UnsafeEntry(f"{text!r}: {problem}", path=text)
    return clean_path(text), None


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


def is_junk(path: str) -> bool:
    parts = [part for part in path.replace("\\", "/").split("/") if part]
    if not parts:
        return True  # "." or "/" alone: nothing to read
    basename = parts[-1]
    return "__MACOSX" in parts or basename.lower() in _JUNK_NAMES or basename.startswith("._")


def size_error(name: str, size: int, limits: Limits) -> ItemError | None:
    if size <= limits.max_entry_bytes:
        return None
    return EntryTooLarge(
        f"{name}: {size} bytes uncompressed; at most {limits.max_entry_bytes} allowed",
        path=name,
        size=size,
        max_entry_bytes=limits.max_entry_bytes,
    )


def count_entry(count: int, limits: Limits) -> int:
    count += 1
    if count > limits.max_entries:
        raise ArchiveLimitExceeded(
            f"archive holds more than {limits.max_entries} files", max_entries=limits.max_entries
        )
    return count


def check_expanded(expanded: int, limits: Limits) -> None:
    if expanded > limits.max_expanded_bytes:
        raise ArchiveLimitExceeded(
            f"archive expands to more than {limits.max_expanded_bytes} bytes",
            max_expanded_bytes=limits.max_expanded_bytes,
        )


def check_image_head(name: str, head: bytes) -> None:
    """UnsupportedFormat unless ``head``, an entry's first bytes, starts like an image the
    decoder accepts: whatever else an archive holds is refused before it is read further."""
    if sniff_image_format(head) is None:
        raise UnsupportedFormat(
            f"{name}: not a supported image format ({', '.join(SUPPORTED_IMAGE_FORMATS)})",
            path=name,
        )


class Readable(Protocol):
    """A stream of an entry's bytes: a zip or tar member."""

    def read(self, size: int, /) -> bytes: ...


def read_declared(stream: Readable, name: str, declared: int, limits: Limits, image_only: bool = False) -> bytes:
    """Read an entry that claims ``declared`` bytes, allocating at most one byte beyond the cap.
    ``image_only``: refuse it (``check_image_head``) from its first bytes, before reading on;
    ``stream`` must then offer ``peek``, as buffered readers do."""
    if image_only:
        # Zip and tar members are buffered readers, which peek.
        head = cast(io.BufferedReader, stream).peek(IMAGE_HEAD_BYTES)[:IMAGE_HEAD_BYTES]
        check_image_head(name, head)
    cap = min(declared, limits.max_entry_bytes)
    data = stream.read(cap + 1)
    if len(data) > limits.max_entry_bytes:
        raise EntryTooLarge(
            f"{name}: more than {limits.max_entry_bytes} bytes uncompressed",
            path=name,
            max_entry_bytes=limits.max_entry_bytes,
        )
    if len(data) != declared:
        raise CorruptArchive(
            f"{name}: holds {'more' if len(data) > declared else len(data)} bytes where its header declares {declared}",
            path=name,
        )
    return data


def library_call(call: Callable[[], _T], what: str) -> _T:
    """Run a zipfile/tarfile/gzip call on untrusted bytes; whatever they raise is damage."""
    try:
        return call()
    except (ColorizeError, MemoryError):
        raise
    except Exception as exc:  # these libraries signal bad input with many exception types
        raise CorruptArchive(f"{what}: {exc}") from exc
