"""``manifest.json``: how each item of a finished job ended, in ``results.zip`` and beside the
results written to a destination (:mod:`shared.storage.destinations`).

One object: the job's id, status and model, and ``items``, one per item in index order::

    {"input_path": "2024/a.png", "output_path": "2024/a.jpg", "status": "done",
     "error_code": null, "model": "colorize-lite"}

``output_path`` is null for an item without a result; ``error_code`` is one of the item error
codes (``shared/errors.py``). An item colorized with colour hints also has ``hints``, the list
it was given (``{"x", "y", "color", "radius"?}``). A job whose hint map named paths that no item
has also has ``unmatched_hints``: ``{"count", "paths"}`` (the first 100 paths, sorted).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from shared.colour.hint_rules import hint_fields
from shared.jobs.records import Item, ItemStatus, Job
from shared.jobs.store import JobStore

_PAGE = 1000


def manifest_entry(job: Job, item: Item) -> dict[str, object]:
    done = item.status == ItemStatus.DONE
    entry: dict[str, object] = {
        "input_path": item.path,
        "output_path": item.output_path if done else None,
        "status": item.status.value,
        "error_code": item.error["code"] if item.error else None,
        "model": job.model,
    }
    # A single image's item may have been recorded without its hints, which its job holds.
    hints = item.hints or (job.hints if item.index == 0 else ())
    if hints:
        entry["hints"] = [hint_fields(hint) for hint in hints]
    return entry


def manifest_chunks(jobs: JobStore, job: Job) -> Iterator[bytes]:
    """The manifest's JSON text, a page of items at a time (a zip stream takes it as it goes)."""
    head: dict[str, object] = {"job_id": job.id, "status": job.status.value, "model": job.model}
    if job.unmatched_hint_count:
        head["unmatched_hints"] = {"count": job.unmatched_hint_count, "paths": list(job.unmatched_hints)}
    yield json.dumps(head)[:-1].encode() + b', "items": ['
    for start in range(0, job.total, _PAGE):
        entries = [json.dumps(manifest_entry(job, item)) for item in jobs.items(job.id, start, _PAGE)]
        if entries:
            yield (",\n" if start else "\n").encode() + ",\n".join(entries).encode()
    yield b"\n]}\n"


def manifest_bytes(jobs: JobStore, job: Job) -> bytes:
    return b"".join(manifest_chunks(jobs, job))
