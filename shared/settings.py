"""All configuration, read once from the environment into one typed object.

Every process (API, worker, CLI, tests) calls ``Settings.from_env()`` once at start-up
and passes the object down; nothing else reads ``os.environ``.
"""

from __future__ import annotations

import ipaddress
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


@dataclass(frozen=True)
class Quotas:
    """Per-tenant quotas and rate limits; 0 turns one off. When hit, the client gets 429 with Retry-After."""

    max_jobs_in_flight: int = 200  # queued or running jobs of one tenant
    max_images_per_day: int = 1_000_000  # images taken in for processing per tenant and UTC day
    requests_per_s: float = 100.0  # sustained API request rate of one tenant
    request_burst: int = 500  # requests a tenant may make at once before the sustained rate applies


# Groups of settings held in their own dataclass, read from COLORIZE_<FIELD> like the others.
NESTED: dict[str, type] = {"limits": Limits, "quotas": Quotas}


# Conventional variable names read when the ``COLORIZE_*`` one is unset.
ENV_ALIASES: dict[str, tuple[str, ...]] = {
    "redis_url": ("REDIS_URL",),
    "s3_endpoint_url": ("S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
    "aws_access_key_id": ("AWS_ACCESS_KEY_ID",),
    "aws_secret_access_key": ("AWS_SECRET_ACCESS_KEY",),
    "s3_region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "metrics_dir": ("PROMETHEUS_MULTIPROC_DIR",),
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
    # API authentication: "keys" (every request needs an API key) or "open" (none; every request
    # acts as tenant "local"). Unset: "open" when api_host is a loopback address, else "keys".
    auth: str | None = None
    # Lets "open" serve clients beyond the loopback interface; without it the API refuses to
    # start open on a non-loopback api_host and asks those clients for a key.
    auth_allow_open_public: bool = False
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
    # bench/engine.py measured 56 % faster than one process using every core (2 cores).
    worker_concurrency: int = 0
    # A task is redelivered only after this many seconds without an ack when its worker
    # dies; it must exceed the longest chunk so a slow chunk is not run twice in parallel.
    visibility_timeout_s: int = 600
    task_soft_time_limit_s: int = 300
    task_time_limit_s: int = 360
    item_max_attempts: int = 3  # a poison item fails after this many crashed attempts
    # A task cut short by storage or Redis being away retries with backoff for about this long
    # before its items fail as ``unavailable``.
    outage_retry_s: int = 3600

    result_ttl_s: int = 7 * 24 * 3600  # results and job records expire after this
    presign_ttl_s: int = 900
    multipart_part_bytes: int = 64 * 1024**2

    # Webhooks (shared/webhooks.py). A delivery attempt waits at most webhook_timeout_s; a failed
    # one is retried after webhook_retry_base_s, doubling up to webhook_retry_max_s (and to half
    # of visibility_timeout_s: a countdown longer than that would be redelivered early).
    webhook_timeout_s: float = 5.0
    webhook_max_attempts: int = 8
    webhook_retry_base_s: float = 5.0
    webhook_retry_max_s: float = 300.0
    # At most one progress event per job per interval, and only once progress has reached a
    # further step of this many percent; 0 lifts either condition.
    webhook_progress_interval_s: float = 10.0
    webhook_progress_step_pct: int = 10
    # Callback URLs resolving to loopback, private, link-local or other non-global addresses are
    # refused (server-side request forgery) unless allowed here; networks as comma-separated CIDRs.
    webhook_allow_private: bool = False
    webhook_allowed_networks: str = ""

    log_format: str = "text"  # text | json (one JSON object per line)
    # Workers serve Prometheus metrics on this port from their main process; 0 = off.
    worker_metrics_port: int = 0
    # prometheus_client multiprocess directory (pool processes, gunicorn workers); None with
    # worker metrics on: a fresh temporary directory per worker.
    metrics_dir: Path | None = None

    limits: Limits = field(default_factory=Limits)
    quotas: Quotas = field(default_factory=Quotas)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Build settings from ``COLORIZE_*`` variables (and the usual REDIS_URL / AWS_* names)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in NESTED:
                continue
            names = ("COLORIZE_" + f.name.upper(),) + ENV_ALIASES.get(f.name, ())
            raw = next((env[n] for n in names if env.get(n)), None)
            if raw is not None:
                values[f.name] = _parse(f.type, raw, f.name)
        for name, group in NESTED.items():
            group_values = {}
            for f in fields(group):
                raw = env.get("COLORIZE_" + f.name.upper())
                if raw:
                    group_values[f.name] = _parse(f.type, raw, f.name)
            values[name] = group(**group_values)
        settings = cls(**values)
        settings.validate()
        return settings

    def to_env(self) -> dict[str, str]:
        """The ``COLORIZE_*`` variables from which ``from_env`` rebuilds these settings (for child processes)."""
        env = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name not in NESTED and value is not None:
                env["COLORIZE_" + f.name.upper()] = _format(value)
        for name, group in NESTED.items():
            for f in fields(group):
                env["COLORIZE_" + f.name.upper()] = _format(getattr(getattr(self, name), f.name))
        return env

    @property
    def worker_processes(self) -> int:
        return self.worker_concurrency or (os.cpu_count() or 1)

    @property
    def stall_after_s(self) -> int:
        """A job that has not moved for this long while no task waits in the queue has lost its
        task message. Longer than any redelivery (visibility timeout) plus any chunk (hard time
        limit), so work merely in progress or about to be redelivered is never taken for lost."""
        return self.visibility_timeout_s + self.task_time_limit_s

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
        if self.log_format not in ("text", "json"):
            raise ValueError(f"COLORIZE_LOG_FORMAT must be text or json, not {self.log_format!r}")
        if self.webhook_max_attempts < 1 or self.webhook_timeout_s <= 0:
            raise ValueError("COLORIZE_WEBHOOK_MAX_ATTEMPTS and COLORIZE_WEBHOOK_TIMEOUT_S must be positive")
        if not 0 <= self.webhook_retry_base_s <= self.webhook_retry_max_s:
            raise ValueError("COLORIZE_WEBHOOK_RETRY_BASE_S must be between 0 and COLORIZE_WEBHOOK_RETRY_MAX_S")
        if not 0 <= self.webhook_progress_step_pct <= 100:
            raise ValueError("COLORIZE_WEBHOOK_PROGRESS_STEP_PCT must be between 0 and 100")
        for network in filter(None, (n.strip() for n in self.webhook_allowed_networks.split(","))):
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as exc:
                raise ValueError(f"COLORIZE_WEBHOOK_ALLOWED_NETWORKS: {exc}") from None
        if self.auth not in (None, "keys", "open"):
            raise ValueError(f"COLORIZE_AUTH must be keys or open (or unset), not {self.auth!r}")
        for f in fields(Quotas):
            if getattr(self.quotas, f.name) < 0:
                raise ValueError(f"COLORIZE_{f.name.upper()} must not be negative (0 turns it off)")


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
