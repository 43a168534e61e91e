"""All configuration, read once from the environment into one typed object.

Every process (API, worker, CLI, tests) calls ``Settings.from_env()`` once at start-up
and passes the object down; nothing else reads ``os.environ``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _default_data_dir() -> Path:
    return PROJECT_ROOT / "var"


@dataclass(frozen=True)
class Limits:
    """Input limits; each one, when hit, becomes a clear client or per-item error."""

    max_request_bytes: int = 256 * 1024**2  # direct multipart upload through the API
    max_upload_bytes: int = 50 * 1024**3  # presigned upload of one source object
    max_entries: int = 100_000  # files in one archive
    max_expanded_bytes: int = 20 * 1024**3  # sum of uncompressed entry sizes
    max_entry_bytes: int = 200 * 1024**2  # one uncompressed entry
    max_compression_ratio: float = 200.0  # uncompressed / compressed, per zip entry
    max_pixels: int = 50_000_000  # width * height of one image
    max_side: int = 30_000  # longest side of one image


# Conventional variable names read when the ``COLORIZE_*`` one is unset.
ENV_ALIASES: dict[str, tuple[str, ...]] = {
    "redis_url": ("REDIS_URL",),
    "s3_endpoint_url": ("S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
    "aws_access_key_id": ("AWS_ACCESS_KEY_ID",),
    "aws_secret_access_key": ("AWS_SECRET_ACCESS_KEY",),
    "s3_region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
}


@dataclass(frozen=True)
class Settings:
    # Broker and job state. None: start an embedded redis-server under data_dir.
    redis_url: str | None = None
    # Object storage. None: start a local SeaweedFS S3 server under data_dir.
    s3_endpoint_url: str | None = None
    # Where clients reach the store, when not at s3_endpoint_url (a container network, a proxy);
    # presigned URLs are built for it.
    s3_public_endpoint_url: str | None = None
    s3_bucket: str = "colorize"
    s3_region: str = "us-east-1"
    aws_access_key_id: str = "colorize"
    aws_secret_access_key: str = "colorize-secret"
    # Local state of the embedded services (Redis AOF, SeaweedFS volumes).
    data_dir: Path = field(default_factory=_default_data_dir)

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # Public base URL clients use; presigned URLs and Location headers are built from it.
    public_url: str | None = None

    models_dir: Path = PROJECT_ROOT / "models"
    model: str = "default"  # a model name from models_dir, or "default"
    device: str = "auto"  # auto | cpu | cuda
    engine_threads: int = 0  # intra-op threads per worker process; 0 = all cores / processes
    batch_size: int = 8  # images per forward pass
    jpeg_quality: int = 90

    chunk_size: int = 16  # images per colorize task
    # Worker processes per machine; 0 = one per core, each with one inference thread, which
    # bench/engine.py measured 30 % faster than one process using every core.
    worker_concurrency: int = 0
    # A task is redelivered only after this many seconds without an ack when its worker
    # dies; it must exceed the longest chunk so a slow chunk is not run twice in parallel.
    visibility_timeout_s: int = 600
    task_soft_time_limit_s: int = 300
    task_time_limit_s: int = 360
    item_max_attempts: int = 3  # a poison item fails after this many crashed attempts

    result_ttl_s: int = 7 * 24 * 3600  # results and job records expire after this
    presign_ttl_s: int = 900
    multipart_part_bytes: int = 64 * 1024**2

    limits: Limits = field(default_factory=Limits)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Build settings from ``COLORIZE_*`` variables (and the usual REDIS_URL / AWS_* names)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "limits":
                continue
            names = ("COLORIZE_" + f.name.upper(),) + ENV_ALIASES.get(f.name, ())
            raw = next((env[n] for n in names if env.get(n)), None)
            if raw is not None:
                values[f.name] = _parse(f.type, raw, f.name)
        limit_values = {}
        for f in fields(Limits):
            raw = env.get("COLORIZE_" + f.name.upper())
            if raw:
                limit_values[f.name] = _parse(f.type, raw, f.name)
        settings = cls(**values, limits=Limits(**limit_values))
        settings.validate()
        return settings

    def to_env(self) -> dict[str, str]:
        """The ``COLORIZE_*`` variables from which ``from_env`` rebuilds these settings (for child processes)."""
        env = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "limits" and value is not None:
                env["COLORIZE_" + f.name.upper()] = _format(value)
        for f in fields(Limits):
            env["COLORIZE_" + f.name.upper()] = _format(getattr(self.limits, f.name))
        return env

    @property
    def worker_processes(self) -> int:
        return self.worker_concurrency or (os.cpu_count() or 1)

    def with_overrides(self, **changes: Any) -> "Settings":
        return replace(self, **changes)

    def validate(self) -> None:
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"COLORIZE_DEVICE must be auto, cpu or cuda, not {self.device!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError("COLORIZE_JPEG_QUALITY must be between 1 and 100")
        if self.chunk_size < 1 or self.batch_size < 1:
            raise ValueError("COLORIZE_CHUNK_SIZE and COLORIZE_BATCH_SIZE must be positive")
        if self.task_time_limit_s <= self.task_soft_time_limit_s:
            raise ValueError("COLORIZE_TASK_TIME_LIMIT_S must exceed the soft limit")
        if self.visibility_timeout_s <= self.task_time_limit_s:
            raise ValueError("COLORIZE_VISIBILITY_TIMEOUT_S must exceed COLORIZE_TASK_TIME_LIMIT_S")


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parse(kind: Any, raw: str, name: str) -> Any:
    kind = str(kind)
    try:
        if "int" in kind:
            return int(raw)
        if "float" in kind:
            return float(raw)
        if "bool" in kind:
            return raw.strip().lower() in ("1", "true", "yes", "on")
        if "Path" in kind:
            return Path(raw).expanduser()
    except ValueError as exc:
        raise ValueError(f"setting {name}: cannot parse {raw!r}") from exc
    return raw
