"""The entries of a source by reference, as the expander registers them (:mod:`worker.expansion`):
one per object under a prefix (listed a page at a time), per key named, or per URL.

An entry's path is its key relative to the prefix (the key itself when keys are named), or the
last part of its URL's path, cleaned as archive names are (``worker.archive_rules.check_name``:
an unsafe one is the item's error). Folder markers and system files of a listing are skipped.
Listed objects larger than ``limits.max_entry_bytes`` fail at once; the sizes of named keys and
URLs are checked when they are read. More than ``limits.max_entries`` entries: the listing
stops there with ``ArchiveLimitExceeded``, the entries before staying valid, as in an archive.
"""

from __future__ import annotations

from collections.abc import Iterator

from shared.errors import ArchiveLimitExceeded, EntryTooLarge
from shared.setting_types import Limits
from shared.storage.item_inputs import ItemInput
from shared.storage.sources import BucketSource, SourceReference, bucket_reference, url_path, url_reference
from worker.archive_entries import ArchiveEntry
from worker.archive_rules import check_name, is_junk
from worker.reference_reader import ReferenceReader


def reference_entries(
    source: SourceReference, tenant: str, reader: ReferenceReader, limits: Limits
) -> Iterator[ArchiveEntry]:
    entries = _named_entries(source, tenant, reader, limits)
    for count, entry in enumerate(entries, 1):
        if count > limits.max_entries:
            raise ArchiveLimitExceeded(
                f"the source holds more than {limits.max_entries} objects", limit=limits.max_entries
            )
        yield entry


def _named_entries(
    source: SourceReference, tenant: str, reader: ReferenceReader, limits: Limits
) -> Iterator[ArchiveEntry]:
    if not isinstance(source, BucketSource):
        for url in source.urls:
            yield _entry(url_path(url), None, url_reference(url), limits)
        return
    if source.keys is not None:
        for key in source.keys:
            yield _entry(key, None, bucket_reference(source.connection, key), limits)
        return
    bucket = reader.bucket(tenant, source.connection)
    for key, size in bucket.list_objects(source.prefix):
        relative = key[len(source.prefix) :]
        if not relative or relative.endswith("/") or is_junk(relative):
            continue
        yield _entry(relative, size, bucket_reference(source.connection, key), limits)


def _entry(name: str, size: int | None, reference: str, limits: Limits) -> ArchiveEntry:
    path, error = check_name(name.encode("utf-8", "surrogateescape"))
    if error is None and size is not None and size > limits.max_entry_bytes:
        error = EntryTooLarge(f"{path}: larger than {limits.max_entry_bytes} bytes", limit=limits.max_entry_bytes)
    location = ItemInput(None, 0, size or 0, reference=reference) if error is None else None
    return ArchiveEntry(path=path, size=size, error=error, location=location)
