"""An archive's own colour hints: ``hints.json`` at its root, the same map by item path that a
request may send (:mod:`shared.colour.hint_rules`), checked by the same rules.

The expander needs the map before it registers the first item. A zip's is read through its
directory. A tar is read in one pass, so a hints.json anywhere in it takes a pass of its own
first, reading headers and that one file (the other members' bytes are skipped); it is made only
for a model that takes hints, for which the file is not an item. For any other model the file is
an item that fails with ``hints_not_supported``, and the archive's images are colorized as ever.

A hints.json that is not JSON, breaks a rule or is larger than ``MAX_HINT_FILE_BYTES`` fails the
job (``InvalidHintsFile``) before any image is counted: half-applied hints would be worse than
none. A damaged or oversized archive found before the file is reported by the expansion pass
itself, as without hints.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import BinaryIO

from shared.colour.hint_rules import MAX_HINT_FILE_BYTES, HintMap, hint_map
from shared.errors import ArchiveLimitExceeded, CorruptArchive, HintsNotSupported, InvalidHintsFile, InvalidRequest
from shared.setting_types import Limits
from worker.archive_entries import ArchiveEntry, iter_entries

HINTS_FILE = "hints.json"


def archive_hints(open_source: Callable[[], BinaryIO], kind: str, limits: Limits) -> HintMap:
    """The map of the archive's root hints.json; empty when it has none."""
    data = _hint_file(open_source, kind, limits)
    return {} if data is None else parse_hint_file(data)


def parse_hint_file(data: bytes) -> HintMap:
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise InvalidHintsFile(f"{HINTS_FILE} is not JSON: {exc}"[:300]) from None
    try:
        return hint_map(document, field=HINTS_FILE)
    except InvalidRequest as exc:
        raise InvalidHintsFile(exc.message, **exc.details) from None


def unused_hint_file(entry: ArchiveEntry, model: str) -> ArchiveEntry:
    """The hints.json of an archive whose model takes no hints, as the item that says so."""
    entry.error = HintsNotSupported(
        f"{HINTS_FILE}: model {model!r} takes no colour hints; the archive's images are colorized without them",
        model=model,
    )
    entry.location = None
    return entry


def _hint_file(open_source: Callable[[], BinaryIO], kind: str, limits: Limits) -> bytes | None:
    with open_source() as source:
        try:
            for entry in iter_entries(source, kind, limits):
                if entry.path == HINTS_FILE:
                    return _read(entry)
        except (ArchiveLimitExceeded, CorruptArchive):
            return None  # the expansion pass meets the same damage and reports it
    return None


def _read(entry: ArchiveEntry) -> bytes:
    if entry.error is not None:
        raise InvalidHintsFile(entry.error.message)  # an entry's error names the entry
    if entry.size is not None and entry.size > MAX_HINT_FILE_BYTES:
        raise InvalidHintsFile(
            f"{HINTS_FILE} holds {entry.size} bytes; at most {MAX_HINT_FILE_BYTES}", limit=MAX_HINT_FILE_BYTES
        )
    return entry.read()
