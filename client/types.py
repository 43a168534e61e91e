"""Typed views of the API's JSON: jobs, their items and counts, models, readiness.

Each type keeps the JSON it came from in ``raw`` (for fields this client does not model and
for ``--json`` output); links are made absolute against the API's base URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urljoin

TERMINAL_STATUSES = frozenset({"succeeded", "partially_succeeded", "failed", "canceled"})


@dataclass(frozen=True)
class ItemError:
    """Why an item (or a whole job) failed: a stable ``code`` and a human ``message``."""

    code: str
    message: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> ItemError | None:
        if not data:
            return None
        return cls(code=str(data.get("code", "error")), message=str(data.get("message", "")))


@dataclass(frozen=True)
class Counts:
    total: int
    done: int
    failed: int
    pending: int


@dataclass(frozen=True)
class Output:
    """How a job's results are written: ``format`` jpeg, png or webp; ``quality`` (jpeg, webp);
    ``max_side``, the longest side a result may have (None: as large as its input)."""

    format: str
    quality: int | None
    max_side: int | None

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Output:
        data = data or {}
        return cls(format=data.get("format", "jpeg"), quality=data.get("quality"), max_side=data.get("max_side"))


@dataclass(frozen=True)
class Hint:
    """A colour hint: ``x``, ``y`` in 0..1 of the photo as shown upright (x to the right, y
    down), ``color`` as ``#rrggbb``, ``radius`` a fraction of its longer side (None: the model's
    smallest spot). For a model whose ``hints`` is true: a list for a single image, lists by
    item path for an archive or images by reference."""

    x: float
    y: float
    color: str
    radius: float | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"x": self.x, "y": self.y, "color": self.color}
        if self.radius is not None:
            body["radius"] = self.radius
        return body

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Hint:
        return cls(float(data["x"]), float(data["y"]), str(data["color"]), data.get("radius"))


@dataclass(frozen=True)
class Job:
    id: str
    status: str
    counts: Counts
    expanded: bool  # False while an archive is still being read: counts.total may still grow
    progress: float  # 0..1
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime | None
    model: str
    temperature: float | None
    source_filename: str | None
    source_kind: str | None
    error: ItemError | None
    url: str
    items_url: str
    results_zip_url: str
    raw: dict[str, Any] = field(repr=False, compare=False)
    output: Output = field(default_factory=lambda: Output("jpeg", None, None))
    result_url: str | None = None  # a single image's result, once done
    hints: tuple[Hint, ...] = ()  # a single image's colour hints
    # Hinted paths no item has (the first 100, sorted), and how many there were.
    unmatched_hints: tuple[str, ...] = ()
    unmatched_hint_count: int = 0

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @classmethod
    def from_json(cls, data: dict[str, Any], base_url: str) -> Job:
        counts = data.get("counts", {})
        links = data.get("links", {})
        source = data.get("source") or {}
        return cls(
            id=data["id"],
            status=data["status"],
            counts=Counts(
                total=int(counts.get("total", 0)),
                done=int(counts.get("done", 0)),
                failed=int(counts.get("failed", 0)),
                pending=int(counts.get("pending", 0)),
            ),
            expanded=bool(data.get("expanded", False)),
            progress=float(data.get("progress", 0.0)),
            created_at=_time(data.get("created_at")),
            started_at=_time(data.get("started_at")),
            finished_at=_time(data.get("finished_at")),
            expires_at=_time(data.get("expires_at")),
            model=data.get("model", ""),
            temperature=data.get("temperature"),
            source_filename=source.get("filename"),
            source_kind=source.get("kind"),
            error=ItemError.from_json(data.get("error")),
            url=_link(base_url, links.get("self"), f"/v1/jobs/{data['id']}"),
            items_url=_link(base_url, links.get("items"), f"/v1/jobs/{data['id']}/items"),
            results_zip_url=_link(base_url, links.get("results_zip"), f"/v1/jobs/{data['id']}/results.zip"),
            raw=data,
            output=Output.from_json(data.get("output")),
            result_url=resolve_link(base_url, links["result"]) if links.get("result") else None,
            hints=tuple(Hint.from_json(hint) for hint in data.get("hints") or ()),
            unmatched_hints=tuple((data.get("unmatched_hints") or {}).get("paths", ())),
            unmatched_hint_count=int((data.get("unmatched_hints") or {}).get("count", 0)),
        )


@dataclass(frozen=True)
class JobPage:
    """A page of the tenant's jobs, newest first; ``next_cursor`` asks for the next (None: the last)."""

    jobs: list[Job]
    next_cursor: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any], base_url: str) -> JobPage:
        return cls(
            jobs=[Job.from_json(job, base_url) for job in data.get("jobs", [])],
            next_cursor=data.get("next_cursor"),
            raw=data,
        )


@dataclass(frozen=True)
class Item:
    """One image of a job; ``output_path`` is where its result goes, keeping the archive's folders."""

    index: int
    path: str
    output_path: str
    status: str  # pending | done | failed | canceled
    size: int | None
    result_url: str | None
    error: ItemError | None
    raw: dict[str, Any] = field(repr=False, compare=False)
    hints: tuple[Hint, ...] = ()  # the colour hints it was given

    @classmethod
    def from_json(cls, data: dict[str, Any], base_url: str) -> Item:
        result = data.get("result_url")
        return cls(
            index=int(data["index"]),
            path=data["path"],
            output_path=data["output_path"],
            status=data["status"],
            size=data.get("size"),
            result_url=resolve_link(base_url, result) if result else None,
            error=ItemError.from_json(data.get("error")),
            raw=data,
            hints=tuple(Hint.from_json(hint) for hint in data.get("hints") or ()),
        )


@dataclass(frozen=True)
class Model:
    name: str
    default: bool
    temperature: float | None
    input_size: int | None
    description: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)
    hints: bool = False  # takes colour hints

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Model:
        return cls(
            name=data["name"],
            default=bool(data.get("default", False)),
            temperature=data.get("temperature"),
            input_size=data.get("input_size"),
            description=data.get("description"),
            raw=data,
            hints=bool(data.get("hints", False)),
        )


@dataclass(frozen=True)
class Connection:
    """A stored S3 connection of the tenant (the API never returns its credentials)."""

    name: str
    endpoint_url: str
    region: str
    bucket: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Connection:
        return cls(
            name=data["name"], endpoint_url=data["endpoint_url"], region=data["region"], bucket=data["bucket"], raw=data
        )


@dataclass(frozen=True)
class Destination:
    """Where a job's results go besides (or, without ``keep_in_service``, instead of) the
    service: ``prefix`` + each result's output path in a stored connection's bucket, and
    ``manifest.json`` once the job has finished."""

    connection: str
    prefix: str = ""
    keep_in_service: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"connection": self.connection, "prefix": self.prefix, "keep_in_service": self.keep_in_service}


@dataclass(frozen=True)
class Health:
    """Readiness: Redis, storage and at least one worker are there."""

    ready: bool
    checks: dict[str, Any]
    raw: dict[str, Any] = field(repr=False, compare=False)


def resolve_link(base_url: str, link: str) -> str:
    """A link from the API made absolute: API paths (``/v1/...``) go below the base URL, which
    may carry a path prefix; anything else (a full URL) is resolved as a browser would."""
    base = base_url.rstrip("/")
    if link.startswith("/v1/") or link in ("/healthz", "/readyz"):
        return base + link
    return urljoin(base + "/", link)


def _link(base_url: str, link: str | None, fallback: str) -> str:
    return resolve_link(base_url, link or fallback)


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value)
