"""The bytes of a batch of items, read from storage where the expander left them
(:mod:`shared.storage.item_inputs`): zip members from the job's source object, tar images from their
chunk's input object, a single image from the source object itself, and items of a source by
reference from the tenant's bucket or URL (:mod:`worker.reference_reader`), each with an error
of its own.

A batch's ranges are sorted and merged where they lie close, so neighbouring archive members
(the usual case: a chunk's items follow each other in the archive) cost one GET per batch.
Zip members are unpacked here, held to the same rules as at expansion (declared sizes, CRC).
"""

from __future__ import annotations

import io
import struct
import threading
import zipfile
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from shared.errors import ColorizeError, CorruptArchive, ItemError, ProcessingFailed, UnsupportedFormat
from shared.jobs.records import Job
from shared.setting_types import Limits
from shared.storage.item_inputs import ItemInput, ZipMember
from shared.storage.object_keys import input_object_key
from shared.storage.object_store import Storage
from worker.archive_rules import read_declared
from worker.reference_reader import ReferenceReader

# Ranges this close are read as one GET (the bytes between are read and dropped) ...
MERGE_GAP_BYTES = 256 * 1024
# ... unless the merged read would exceed this.
MERGE_MAX_BYTES = 64 * 1024**2
# zipfile's local header layout (APPNOTE 4.3.7), which typeshed leaves out as undocumented.
_zipfile: Any = zipfile
# How an entry is named in the errors of a member read here (its path is in the item listing).
_ENTRY = "archive entry"


@dataclass
class _Read:
    key: str
    start: int
    end: int
    items: list[tuple[int, ItemInput]]


class BatchInputs:
    """The bytes of one batch's items, fetched together on the first request (by whichever of
    the threads decoding them asks first) and then handed out one item at a time."""

    def __init__(
        self,
        storage: Storage,
        job: Job,
        inputs: Mapping[int, ItemInput | None],
        limits: Limits,
        timed: Callable[[str], AbstractContextManager[object]] = lambda stage: nullcontext(),
        references: ReferenceReader | None = None,
    ) -> None:
        self.storage = storage
        self.references = references
        self.job = job
        self.inputs = dict(inputs)
        self.limits = limits
        self._timed = timed  # times a stage (``WorkerMetrics.stage``)
        self._lock = threading.Lock()
        self._raw: dict[int, bytes | ItemError] | None = None
        self._failure: BaseException | None = None

    def fetch(self) -> None:
        """Read the batch from storage, once, whoever asks first; the others wait for it.
        Raises what the reading raised: NotFound when an object is gone, ServiceUnavailable
        when storage is away, ProcessingFailed for an item without a known input."""
        with self._lock:
            if self._raw is None and self._failure is None:
                try:
                    with self._timed("storage_get"):
                        self._raw = self._fetch()
                except BaseException as exc:  # noqa: BLE001  # kept, and raised to every reader below
                    self._failure = exc
        if self._failure is not None:
            raise self._failure

    def read(self, index: int) -> bytes:
        """The item's image bytes (a zip member unpacked: an ItemError when it is damaged; an
        item read by reference: the ItemError its read ended with)."""
        self.fetch()
        assert self._raw is not None  # fetched, or fetch() raised
        raw = self._raw.pop(index)
        if isinstance(raw, ItemError):
            raise raw
        where = self.inputs[index]
        if where is None or where.member is None:
            return raw
        return unpack_zip_member(raw, where.member, self.limits)

    def _fetch(self) -> dict[int, bytes | ItemError]:
        raw: dict[int, bytes | ItemError] = {}
        if self.job.source_kind == "image":
            # A single-image job: the source object is the image.
            data = self.storage.get_bytes(self.job.source_key)
            return {index: data for index in self.inputs}
        located: dict[int, ItemInput] = {}
        referenced: dict[int, str] = {}
        for index, where in self.inputs.items():
            if where is None:
                raise ProcessingFailed("the item's input is missing")
            if where.reference is not None:
                referenced[index] = where.reference
            else:
                located[index] = where
        if referenced:
            if self.references is None:
                raise ProcessingFailed("items read by reference need a reference reader")
            raw.update(self.references.read_many(self.job.tenant, referenced))
        for read in self._plan(located):
            data = self.storage.get_range(read.key, read.start, read.end - read.start)
            for index, where in read.items:
                if (where.offset, where.end) == (read.start, read.end):
                    raw[index] = data
                else:
                    raw[index] = data[where.offset - read.start : where.end - read.start]
        return raw

    def _plan(self, located: Mapping[int, ItemInput]) -> list[_Read]:
        """The GETs that cover every item stored in this job's objects: per object, ranges in order,
        merged where close."""
        reads: list[_Read] = []
        by_place = sorted(located.items(), key=lambda pair: (self._key(pair[1]), pair[1].offset))
        for index, where in by_place:
            key = self._key(where)
            last = reads[-1] if reads else None
            if (
                last is not None
                and last.key == key
                and where.offset - last.end <= MERGE_GAP_BYTES
                and max(last.end, where.end) - last.start <= MERGE_MAX_BYTES
            ):
                last.end = max(last.end, where.end)
                last.items.append((index, where))
            else:
                reads.append(_Read(key, where.offset, where.end, [(index, where)]))
        return reads

    def _key(self, where: ItemInput) -> str:
        if where.object is None:
            return self.job.source_key
        return input_object_key(self.job.tenant, self.job.id, where.object)


def unpack_zip_member(raw: bytes, member: ZipMember, limits: Limits) -> bytes:
    """A zip member's bytes from its local header and compressed data."""

    def unpack() -> bytes:
        header = raw[: _zipfile.sizeFileHeader]
        if len(header) < _zipfile.sizeFileHeader:
            raise CorruptArchive(f"{_ENTRY}: truncated local header")
        fields = struct.unpack(_zipfile.structFileHeader, header)
        if fields[_zipfile._FH_SIGNATURE] != _zipfile.stringFileHeader:
            raise CorruptArchive(f"{_ENTRY}: bad local header")
        start = _zipfile.sizeFileHeader + fields[_zipfile._FH_FILENAME_LENGTH] + fields[_zipfile._FH_EXTRA_FIELD_LENGTH]
        info = zipfile.ZipInfo(_ENTRY)
        info.compress_type, info.compress_size, info.file_size = member.method, member.compressed_size, member.size
        info.CRC, info.flag_bits = member.crc, member.flags
        compressed = io.BytesIO(raw[start : start + member.compressed_size])
        # zipfile's own reader (decompression, CRC check) over the member alone.
        with zipfile.ZipExtFile(compressed, "r", info) as stream:
            return read_declared(stream, _ENTRY, member.size, limits)

    try:
        return unpack()
    except NotImplementedError as exc:  # a compression method this Python lacks
        raise UnsupportedFormat(f"{_ENTRY}: {exc}") from exc
    except (ColorizeError, MemoryError):
        raise
    except Exception as exc:
        raise CorruptArchive(f"{_ENTRY}: {exc}") from exc
