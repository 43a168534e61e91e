"""Jobs and items as the service sees them: statuses, the moves between them, records.

A job is ``queued`` until a task starts on it, ``running`` until every item has ended and its
archive has been read to the end, then ``succeeded`` (every item done), ``partially_succeeded``
(some failed, or the archive was cut short), ``failed`` (none done) or ``canceled``. Each item
ends once, ``done`` or ``failed``. :class:`shared.jobs.store.JobStore` keeps this state in Redis.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from shared.colour.hint_rules import hint_fields, hint_from_fields
from shared.colour.hints import Hint
from shared.errors import ColorizeError, ItemError
from shared.imaging.output_options import DEFAULT_OUTPUT, OutputOptions
from shared.storage.item_inputs import ItemInput


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIALLY_SUCCEEDED = "partially_succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


class ItemStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
    CANCELED = "canceled"  # shown for items a canceled job will never process


TERMINAL_STATUSES = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.PARTIALLY_SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED}
)

# The only moves a job may make; the job scripts are generated from this table, so Redis
# enforces exactly what it states.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELED}),
    JobStatus.RUNNING: frozenset(
        {JobStatus.SUCCEEDED, JobStatus.PARTIALLY_SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED}
    ),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.PARTIALLY_SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELED: frozenset(),
}


# --- records ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    id: str
    tenant: str
    status: JobStatus
    model: str
    temperature: float | None
    source_filename: str | None
    source_kind: str
    source_key: str
    total: int
    done: int
    failed: int
    expanded: bool
    created_at: float
    started_at: float | None
    finished_at: float | None
    expires_at: float
    error: dict[str, str] | None
    callback_url: str | None = None
    webhook_events: tuple[str, ...] = ()
    output: OutputOptions = DEFAULT_OUTPUT
    hints: tuple[Hint, ...] = ()  # a single image's colour hints
    # Paths of the job's hint map (its request's, its archive's hints.json) that no item has, as
    # the expander found them: at most shared.jobs.hint_maps.MAX_SHOWN_UNMATCHED of them, and how many there were.
    unmatched_hints: tuple[str, ...] = ()
    unmatched_hint_count: int = 0

    @property
    def pending(self) -> int:
        return max(self.total - self.done - self.failed, 0)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def progress(self) -> float:
        if self.status in (JobStatus.SUCCEEDED, JobStatus.PARTIALLY_SUCCEEDED, JobStatus.FAILED) and self.pending == 0:
            return 1.0
        if not self.total:
            return 0.0
        return round((self.done + self.failed) / self.total, 4)


@dataclass(frozen=True)
class NewItem:
    """An item as the expander registers it; ``error`` set means it failed before processing.
    ``input``: where its bytes are (None for a failed item, and for the image of a single-image
    job, which is the job's source object)."""

    index: int
    path: str
    output_path: str
    size: int | None
    error: ItemError | None = None
    input: ItemInput | None = None
    hints: tuple[Hint, ...] = ()  # the colour hints its job's map gives its path


@dataclass(frozen=True)
class Item:
    index: int
    path: str
    output_path: str
    size: int | None
    status: ItemStatus
    error: dict[str, str] | None
    hints: tuple[Hint, ...] = ()


@dataclass(frozen=True)
class ItemResult:
    """How one processed item ended: done, or failed with ``error``."""

    index: int
    status: ItemStatus
    error: ColorizeError | None = None

    @classmethod
    def done(cls, index: int) -> ItemResult:
        return cls(index, ItemStatus.DONE)

    @classmethod
    def failed(cls, index: int, error: ColorizeError) -> ItemResult:
        return cls(index, ItemStatus.FAILED, error)


# --- encoding -----------------------------------------------------------------------------


def error_json(error: ColorizeError) -> str:
    """An item's error as stored: its code and message."""
    return json.dumps({"code": error.code, "message": error.message}, separators=(",", ":"))


def item_json(item: NewItem) -> str:
    record: dict[str, object] = {"path": item.path, "output_path": item.output_path, "size": item.size}
    if item.hints:
        record["hints"] = [hint_fields(hint) for hint in item.hints]
    return json.dumps(record, separators=(",", ":"))


def hints_json(hints: Sequence[Hint]) -> str:
    """Hints as stored in the job's record, and as shown (``radius`` only where given)."""
    return json.dumps([hint_fields(hint) for hint in hints], separators=(",", ":"))


def decode_hints(text: str) -> tuple[Hint, ...]:
    return _hints(json.loads(text or "[]"))


def _hints(fields: list[dict[str, Any]]) -> tuple[Hint, ...]:
    return tuple(hint_from_fields(hint) for hint in fields)


def decode_job(fields: dict[bytes, bytes]) -> Job:
    text = {k.decode(): v.decode() for k, v in fields.items()}
    error = None
    if text.get("error_code"):
        error = {"code": text["error_code"], "message": text.get("error_message", "")}
    return Job(
        id=text["id"],
        tenant=text["tenant"],
        status=JobStatus(text["status"]),
        model=text["model"],
        temperature=_optional_float(text.get("temperature", "")),
        source_filename=text.get("source_filename") or None,
        source_kind=text["source_kind"],
        source_key=text["source_key"],
        total=int(text.get("total", 0)),
        done=int(text.get("done", 0)),
        failed=int(text.get("failed", 0)),
        expanded=text.get("expanded") == "1",
        created_at=float(text["created_at"]),
        started_at=_optional_float(text.get("started_at", "")),
        finished_at=_optional_float(text.get("finished_at", "")),
        expires_at=float(text["expires_at"]),
        error=error,
        callback_url=text.get("callback_url") or None,
        webhook_events=tuple(filter(None, text.get("webhook_events", "").split(","))),
        output=OutputOptions.from_record(text),
        hints=decode_hints(text.get("hints", "")),
        unmatched_hints=tuple(json.loads(text.get("unmatched_hints") or "[]")),
        unmatched_hint_count=int(text.get("unmatched_hint_count") or 0),
    )


def decode_item(index: int, record: bytes, status: bytes | None, error: bytes | None, canceled: bool) -> Item:
    data = json.loads(record)
    if status is not None:
        state = ItemStatus(status.decode())
    else:
        state = ItemStatus.CANCELED if canceled else ItemStatus.PENDING
    return Item(
        index=index,
        path=data["path"],
        output_path=data["output_path"],
        size=data.get("size"),
        status=state,
        error=json.loads(error) if error else None,
        hints=_hints(data.get("hints", [])),
    )


def decode_registered(index: int, record: bytes | str) -> NewItem:
    """An item as the expander registered it (its output path, its hints), from its record."""
    data = json.loads(record)
    return NewItem(index, data["path"], data["output_path"], data.get("size"), hints=_hints(data.get("hints", [])))


def _optional_float(value: str) -> float | None:
    return float(value) if value else None
