"""All configuration, read once from the environment into one typed, validated object.

Every process (API, worker, CLI, tests) calls ``Settings.from_env()`` once at start-up
and passes the object down; nothing else reads ``os.environ``.

Each field is parsed by its type and checked against its range whenever a ``Settings`` is
built (they are pydantic dataclasses, so ``dataclasses.fields`` and ``replace`` still work).
``from_env`` also checks the relations between fields, and refuses a bad value with a
``SettingsError`` that names the variable, the value and what was expected.

pydantic-settings' ``BaseSettings`` is not used: it reads ``os.environ`` whenever an object is
built, where this one is built from one given mapping, once; and it reads a nested group from
JSON or ``PREFIX_GROUP__FIELD`` names, where ``Limits`` and ``Quotas`` are read from the same
flat ``COLORIZE_<FIELD>`` names as the rest. The value types, and those two groups, are in
``shared/setting_types.py``.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import field, fields, replace
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, ValidationError
from pydantic.dataclasses import dataclass

from shared.redis_keys import NAMESPACE
from shared.setting_types import (
    CONFIG,
    BrokerUrlText,
    Count,
    FernetKey,
    Flag,
    HttpUrlText,
    KeyPrefix,
    Limits,
    LocalPath,
    Networks,
    OptionalPort,
    Percent,
    Port,
    Quotas,
    RedisUrlText,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PREFIX = "COLORIZE_"

log = logging.getLogger(__name__)


class SettingsError(ValueError):
    """Settings that cannot be used: one problem per line, each naming its variable and value."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        if len(self.problems) == 1:
            super().__init__(self.problems[0])
        else:
            super().__init__(f"{len(self.problems)} invalid settings:\n  " + "\n  ".join(self.problems))


def _default_data_dir() -> Path:
    return PROJECT_ROOT / "var"


# Groups of settings held in their own dataclass, read from COLORIZE_<FIELD> like the others.
NESTED: dict[str, type] = {"limits": Limits, "quotas": Quotas}


# Conventional variable names read when the ``COLORIZE_*`` one is unset.
ENV_ALIASES: dict[str, tuple[str, ...]] = {
    "redis_url": ("REDIS_URL",),
    "broker_url": ("CELERY_BROKER_URL",),
    "s3_endpoint_url": ("S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
    "aws_access_key_id": ("AWS_ACCESS_KEY_ID",),
    "aws_secret_access_key": ("AWS_SECRET_ACCESS_KEY",),
    "s3_region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "metrics_dir": ("PROMETHEUS_MULTIPROC_DIR",),
}

# The project's other COLORIZE_* variables, not settings: the command-line client's and the test suite's.
OTHER_VARIABLES = frozenset(
    {
        "COLORIZE_API_URL",
        "COLORIZE_API_KEY",
        "COLORIZE_SOAK",
        "COLORIZE_FUZZ_EXAMPLES",
        "COLORIZE_TEST_EXTRAS",
        "COLORIZE_WEB_SCREENSHOT_DIR",
    }
)


@dataclass(frozen=True, config=CONFIG)
class Settings:
    # Job state, and the broker unless broker_url names another. None: start an embedded
    # redis-server under data_dir.
    redis_url: RedisUrlText | None = None
    # Put in front of every Redis key of the service, the broker's queues included, so that
    # several deployments (or test runs) share one Redis database without seeing each other's
    # jobs or tasks; e.g. "staging:". Empty: the keys exactly as shared/redis_keys.py lists them.
    redis_key_prefix: KeyPrefix = ""
    # Redis connections one API process keeps; a request that finds them all in use waits for one
    # up to api_redis_wait_s, then is answered 503 with Retry-After. Each gevent greenlet holds one
    # only while its command runs, so this bounds concurrent commands, not concurrent requests.
    api_redis_connections: Count = 100
    api_redis_wait_s: PositiveFloat = 10.0
    # The Celery broker, when not the Redis of redis_url: amqp://user:password@host:5672/vhost puts
    # tasks on RabbitMQ (a quorum queue per lane, publisher confirms; shared/queue/broker_queues.py)
    # while job state stays in Redis. RabbitMQ for deployments; Redis alone for one machine.
    broker_url: BrokerUrlText | None = None
    # Object storage. None: start a local SeaweedFS S3 server under data_dir.
    s3_endpoint_url: HttpUrlText | None = None
    # Where clients reach the store, when not at s3_endpoint_url (a container network, a proxy);
    # presigned URLs are built for it.
    s3_public_endpoint_url: HttpUrlText | None = None
    s3_bucket: str = "colorize"
    s3_region: str = "us-east-1"
    aws_access_key_id: str = "colorize"
    aws_secret_access_key: str = "colorize-secret"
    # Local state of the embedded services (Redis AOF, SeaweedFS volumes).
    data_dir: LocalPath = field(default_factory=_default_data_dir)

    api_host: str = "127.0.0.1"
    api_port: Port = 8000
    # API authentication: "keys" (every request needs an API key) or "open" (none; every request
    # acts as tenant "local"). Unset: "open" when api_host is a loopback address, else "keys".
    auth: Literal["keys", "open"] | None = None
    # Lets "open" serve clients beyond the loopback interface; without it the API refuses to
    # start open on a non-loopback api_host and asks those clients for a key.
    auth_allow_open_public: Flag = False
    # Public base URL clients use; presigned URLs and Location headers are built from it.
    public_url: HttpUrlText | None = None
    # Reverse proxies (comma-separated CIDRs) whose X-Forwarded-For / X-Forwarded-Proto the API
    # believes; from any other peer those headers are ignored (api/proxies.py).
    trusted_proxies: Networks = ""

    models_dir: LocalPath = PROJECT_ROOT / "models"
    model: str = "default"  # a model name from models_dir, or "default"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    engine_threads: NonNegativeInt = 0  # intra-op threads per worker process; 0 = all cores / processes
    batch_size: Count = 8  # images per forward pass
    jpeg_quality: Annotated[int, Field(ge=1, le=100)] = 90  # of JPEG and WebP results whose job names none

    chunk_size: Count = 16  # images per colorize task
    # Worker processes per machine; 0 = one per core, each with one inference thread, which
    # bench/engine.py measured 56 % faster than one process using every core (2 cores).
    worker_concurrency: NonNegativeInt = 0
    # A task is redelivered only after this many seconds without an ack when its worker
    # dies; it must exceed the longest chunk so a slow chunk is not run twice in parallel.
    visibility_timeout_s: Count = 600
    task_soft_time_limit_s: Count = 300
    task_time_limit_s: Count = 360
    item_max_attempts: Count = 3  # a poison item fails after this many crashed attempts
    # A task cut short by storage or Redis being away retries with backoff for about this long
    # before its items fail as ``unavailable``.
    outage_retry_s: NonNegativeInt = 3600

    result_ttl_s: Count = 7 * 24 * 3600  # results and job records expire after this
    # S3 signatures (SigV4) are valid for at most 7 days.
    presign_ttl_s: Annotated[int, Field(ge=1, le=7 * 24 * 3600)] = 900
    # S3 multipart parts: at least 5 MiB (all but the last), at most 5 GiB.
    multipart_part_bytes: Annotated[int, Field(ge=5 * 1024**2, le=5 * 1024**3)] = 64 * 1024**2

    # Webhooks (shared/webhooks/events.py, shared/webhooks/callback_urls.py). A delivery attempt waits at most webhook_timeout_s; a failed
    # one is retried after webhook_retry_base_s, doubling up to webhook_retry_max_s (and to half
    # of visibility_timeout_s: a countdown longer than that would be redelivered early).
    webhook_timeout_s: PositiveFloat = 5.0
    webhook_max_attempts: Count = 8
    webhook_retry_base_s: NonNegativeFloat = 5.0
    webhook_retry_max_s: NonNegativeFloat = 300.0
    # At most one progress event per job per interval, and only once progress has reached a
    # further step of this many percent; 0 lifts either condition.
    webhook_progress_interval_s: NonNegativeFloat = 10.0
    webhook_progress_step_pct: Percent = 10
    # Callback URLs, connection endpoints and URL sources resolving to loopback, private, link-local
    # or other non-global addresses are refused (server-side request forgery) unless allowed here;
    # networks as comma-separated CIDRs (shared/network/addresses.py).
    webhook_allow_private: Flag = False
    webhook_allowed_networks: Networks = ""
    # Encrypts the credentials of tenants' stored S3 connections (POST /v1/connections) in Redis:
    # a Fernet key, e.g. from `python -c "from cryptography.fernet import Fernet;
    # print(Fernet.generate_key().decode())"`; the API and every worker need the same one. Their
    # endpoints, and URL sources, obey the webhook address rules above. None: connections are
    # refused (501), except that `colorize serve` on embedded services makes one, kept in data_dir/connection.key.
    connection_key: FernetKey | None = None

    log_format: Literal["text", "json"] = "text"  # json: one JSON object per line
    # Workers serve Prometheus metrics on this port from their main process; 0 = off.
    worker_metrics_port: OptionalPort = 0
    # prometheus_client multiprocess directory (pool processes, gunicorn workers); None with
    # worker metrics on: a fresh temporary directory per worker.
    metrics_dir: LocalPath | None = None

    limits: Limits = field(default_factory=Limits)
    quotas: Quotas = field(default_factory=Quotas)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``COLORIZE_*`` variables (and the usual REDIS_URL / AWS_* names);
        an empty variable counts as unset. Raises SettingsError naming every bad variable."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {group: {} for group in NESTED}
        read_from: dict[tuple[str, ...], str] = {}
        for place, names in VARIABLES.items():
            name = next((n for n in names if env.get(n)), None)
            if name is not None:
                read_from[place] = name
                (values[place[0]] if len(place) == 2 else values)[place[-1]] = env[name]
        _warn_unknown(env)
        try:
            settings = cls(**values)
        except ValidationError as exc:
            raise SettingsError(_problems(exc, read_from)) from None
        settings.validate()
        return settings

    @classmethod
    def from_env_or_exit(cls, env: Mapping[str, str] | None = None, status: int = 2) -> Settings:
        """``from_env`` for a program's entry point: bad settings end the process with ``status``
        and their message on stderr, not a traceback."""
        try:
            return cls.from_env(env)
        except SettingsError as exc:
            print(f"colorize: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(status) from None

    def to_env(self) -> dict[str, str]:
        """The ``COLORIZE_*`` variables from which ``from_env`` rebuilds these settings (for child processes)."""
        env = {}
        for place in VARIABLES:
            value = getattr(getattr(self, place[0]), place[1]) if len(place) == 2 else getattr(self, place[0])
            if value is not None:
                env[_canonical(place)] = _format(value)
        return env

    @property
    def worker_processes(self) -> int:
        return self.worker_concurrency or (os.cpu_count() or 1)

    @property
    def celery_broker_url(self) -> str | None:
        """Where Celery's task messages go: ``broker_url``, else the Redis of ``redis_url``."""
        return self.broker_url or self.redis_url

    @property
    def broker_is_amqp(self) -> bool:
        """Whether tasks go through RabbitMQ (AMQP) rather than Redis."""
        return (self.celery_broker_url or "").split(":", 1)[0] in ("amqp", "amqps")

    @property
    def redis_namespace(self) -> str:
        """The namespace of the service's keys (``shared.redis_keys.RedisKeys``), after the key prefix."""
        return self.redis_key_prefix + NAMESPACE

    @property
    def stall_after_s(self) -> int:
        """A job that has not moved for this long while no task waits in the queue has lost its
        task message. Longer than any redelivery (visibility timeout) plus any chunk (hard time
        limit), so work merely in progress or about to be redelivered is never taken for lost."""
        return self.visibility_timeout_s + self.task_time_limit_s

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with ``changes``, each parsed and checked like the value of a variable."""
        try:
            return replace(self, **changes)
        except ValidationError as exc:
            raise SettingsError(_problems(exc, {})) from None

    def validate(self) -> None:
        """Check the relations between settings (each one alone was checked when built).

        ``from_env`` runs this; building an object does not, so that tests and tools can make
        variants one field at a time."""
        relations = [  # (holds, setting, what it must do, the other setting)
            (
                self.task_time_limit_s > self.task_soft_time_limit_s,
                "task_time_limit_s",
                "exceed",
                "task_soft_time_limit_s",
            ),
            (self.visibility_timeout_s > self.task_time_limit_s, "visibility_timeout_s", "exceed", "task_time_limit_s"),
            (
                self.webhook_retry_max_s >= self.webhook_retry_base_s,
                "webhook_retry_max_s",
                "be at least",
                "webhook_retry_base_s",
            ),
        ]
        problems = [
            f"{_canonical((a,))}={getattr(self, a)!r} must {must} {_canonical((b,))}={getattr(self, b)!r}"
            for holds, a, must, b in relations
            if not holds
        ]
        if problems:
            raise SettingsError(problems)


def _variables() -> dict[tuple[str, ...], tuple[str, ...]]:
    """Each field's place in Settings, (name,) or (group, name), with the variables read for it,
    first one first."""
    places: dict[tuple[str, ...], tuple[str, ...]] = {}
    for f in fields(Settings):
        if f.name in NESTED:
            places.update({(f.name, g.name): (PREFIX + g.name.upper(),) for g in fields(NESTED[f.name])})
        else:
            places[(f.name,)] = (PREFIX + f.name.upper(),) + ENV_ALIASES.get(f.name, ())
    return places


VARIABLES = _variables()
_KNOWN = frozenset(name for names in VARIABLES.values() for name in names) | OTHER_VARIABLES


def _canonical(place: tuple[str, ...]) -> str:
    return PREFIX + place[-1].upper()


def _warn_unknown(env: Mapping[str, str]) -> None:
    for name in sorted(n for n in env if n.startswith(PREFIX) and n not in _KNOWN):
        close = difflib.get_close_matches(name, _KNOWN, n=1, cutoff=0.85)
        log.warning("%s is not a setting and is ignored%s", name, f" (did you mean {close[0]}?)" if close else "")


_BOOLEAN = "is not a boolean (true/false, 1/0, yes/no, on/off)"
# What each kind of pydantic error means for one variable, worded to follow "NAME='value' ".
_EXPECTED = {
    "bool_parsing": _BOOLEAN,
    "bool_type": _BOOLEAN,
    "int_parsing": "is not an integer",
    "int_type": "is not an integer",
    "int_from_float": "is not an integer",
    "float_parsing": "is not a number",
    "float_type": "is not a number",
    "finite_number": "is not a finite number",
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be greater than {gt}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
    "literal_error": "must be {expected}",
    "string_type": "is not a string",
    "string_too_long": "must be at most {max_length} characters long",
}


def _problems(exc: ValidationError, read_from: Mapping[tuple[str, ...], str]) -> list[str]:
    problems = []
    for error in exc.errors():
        place = tuple(str(part) for part in error["loc"])
        name = read_from.get(place) or (_canonical(place) if place in VARIABLES else ".".join(place))
        if error["type"] in _EXPECTED:
            reason = _EXPECTED[error["type"]].format(**error.get("ctx", {}))
        elif error["type"] == "value_error":
            reason = str(error["ctx"]["error"])
        else:
            reason = f"is not valid ({error['msg']})"
        problems.append(f"{name}={_shown(place, error['input'])} {reason}")
    return problems


# Settings whose values a message never shows: start-up errors reach logs that others read.
SECRET_SETTINGS = frozenset({"connection_key", "aws_secret_access_key"})
# user:password@ in a URL (a broker's or Redis's): the password is not shown either.
_URL_PASSWORD = re.compile(r"(?<=://)([^/@:]*):[^/@]*@")


def _shown(place: tuple[str, ...], value: Any) -> str:
    """A bad value as its message quotes it: a secret only by its length, a URL without its password."""
    if place[-1] in SECRET_SETTINGS:
        return f"<hidden, {len(value) if isinstance(value, str) else 0} characters>"
    if isinstance(value, str):
        return repr(_URL_PASSWORD.sub(r"\1:***@", value))
    return repr(value)


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
