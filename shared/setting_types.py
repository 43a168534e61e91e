"""The types of setting values, each parsed and checked by pydantic, and the groups of settings
held in a dataclass of their own (``Limits``, ``Quotas``), read from the same flat
``COLORIZE_<FIELD>`` variables as the rest of ``shared.settings.Settings``."""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AnyUrl,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    TypeAdapter,
    UrlConstraints,
    ValidationError,
)
from pydantic.dataclasses import dataclass


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _url(*schemes: str) -> Callable[[str], str]:
    """A check that a string is a URL with one of ``schemes``; the string is kept as written."""
    adapter = TypeAdapter(Annotated[AnyUrl, UrlConstraints(allowed_schemes=list(schemes))])

    def check(value: str) -> str:
        try:
            adapter.validate_python(value)
        except ValidationError as exc:
            raise ValueError(f"is not a URL ({exc.errors()[0]['msg']})") from None
        return value

    return check


def _key_prefix(value: str) -> str:
    # No braces (a Redis Cluster hash tag), glob characters (kombu subscribes by pattern) or spaces.
    if not re.fullmatch(r"[A-Za-z0-9_.:-]*", value):
        raise ValueError("may hold only letters, digits and _ . : -")
    return value


def _fernet_key(value: str) -> str:
    # Checked as shared.tenancy.stored_connections reads it: 32 bytes in URL-safe base64.
    try:
        if len(base64.urlsafe_b64decode(value.encode("ascii"))) == 32:
            return value
    except (ValueError, UnicodeEncodeError):
        pass
    raise ValueError("is not a Fernet key (32 bytes in URL-safe base64, as Fernet.generate_key() makes)")


def _networks(value: str) -> str:
    for network in filter(None, (n.strip() for n in value.split(","))):
        try:
            ipaddress.ip_network(network, strict=False)  # as shared.network.addresses.AddressPolicy reads them
        except ValueError as exc:
            raise ValueError(f"is not a comma-separated list of networks (CIDR): {exc}") from None
    return value


Flag = Annotated[bool, BeforeValidator(_strip)]
Count = Annotated[int, Field(ge=1)]
Port = Annotated[int, Field(ge=1, le=65535)]
OptionalPort = Annotated[int, Field(ge=0, le=65535)]  # 0: off
Percent = Annotated[int, Field(ge=0, le=100)]
LocalPath = Annotated[Path, AfterValidator(Path.expanduser)]
HttpUrlText = Annotated[str, AfterValidator(_url("http", "https"))]
RedisUrlText = Annotated[str, AfterValidator(_url("redis", "rediss", "unix"))]
BrokerUrlText = Annotated[str, AfterValidator(_url("redis", "rediss", "unix", "amqp", "amqps"))]
Networks = Annotated[str, AfterValidator(_networks)]
FernetKey = Annotated[str, BeforeValidator(_strip), AfterValidator(_fernet_key)]
KeyPrefix = Annotated[str, Field(max_length=64), AfterValidator(_key_prefix)]

CONFIG = ConfigDict(allow_inf_nan=False)


@dataclass(frozen=True, config=CONFIG)
class Limits:
    """Input limits; each one, when hit, becomes a clear client or per-item error."""

    max_request_bytes: Count = 256 * 1024**2  # direct multipart upload through the API
    max_upload_bytes: Count = 50 * 1024**3  # presigned upload of one source object
    # A JSON request body (a job, an upload, a connection): parsed whole, at several times its size
    # in memory, so bound far below uploads; enough for max_entries source URLs of ~150 characters.
    max_json_bytes: Count = 16 * 1024**2
    max_entries: Count = 100_000  # files in one archive
    max_expanded_bytes: Count = 20 * 1024**3  # sum of uncompressed entry sizes
    max_entry_bytes: Count = 200 * 1024**2  # one uncompressed entry
    max_compression_ratio: Annotated[float, Field(ge=1)] = 200.0  # uncompressed / compressed, per zip entry
    max_pixels: Count = 50_000_000  # width * height of one image
    max_side: Count = 30_000  # longest side of one image
    # Memory one colorize worker process may use (shared/imaging/memory_budget.py); an image that
    # cannot be decoded and colorized within it fails with image_too_large.
    worker_memory_bytes: Annotated[int, Field(ge=512 * 1024**2)] = 2 * 1024**3
    # Reading one object or URL of a source by reference (worker/reference_reader.py): the whole
    # transfer ends within this many seconds, and, from its fifth second on, its average rate
    # stays at least this many bytes per second (0: no minimum); else source_too_slow.
    source_deadline_s: Annotated[float, Field(gt=0)] = 60.0
    source_min_bytes_per_s: NonNegativeInt = 64 * 1024


@dataclass(frozen=True, config=CONFIG)
class Quotas:
    """Per-tenant quotas and rate limits; 0 turns one off. When hit, the client gets 429 with Retry-After."""

    max_jobs_in_flight: NonNegativeInt = 200  # queued or running jobs of one tenant
    max_images_per_day: NonNegativeInt = 1_000_000  # images taken in for processing per tenant and UTC day
    requests_per_s: NonNegativeFloat = 100.0  # sustained API request rate of one tenant
    request_burst: NonNegativeInt = 500  # requests a tenant may make at once before the sustained rate applies
    # Bytes one tenant keeps in storage, uploads in progress included: uploads, sources, results.
    max_stored_bytes: NonNegativeInt = 100 * 1024**3
    # Requests with a wrong API key from one client address (not per tenant: the key names none).
    auth_failures_per_s: NonNegativeFloat = 1.0
    auth_failure_burst: NonNegativeInt = 20
