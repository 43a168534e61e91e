"""S3 client failures in this project's error types: a missing object is NotFound, a store
that cannot be reached or is failing is ServiceUnavailable."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import BotoCoreError, ClientError

from shared.errors import NotFound, ServiceUnavailable

MISSING_CODES = frozenset({"NoSuchKey", "NotFound", "404", "NoSuchUpload"})
THROTTLE_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "ServiceUnavailable"})


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def http_status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


@contextmanager
def translated_errors(key: str | None = None) -> Iterator[None]:
    """Missing objects become NotFound; an unreachable or failing store becomes ServiceUnavailable."""
    try:
        yield
    except ClientError as exc:
        code = error_code(exc)
        if code in MISSING_CODES or (http_status(exc) == 404 and code != "NoSuchBucket"):
            raise NotFound(f"{key!r} does not exist in storage", key=key) from exc
        if code == "NoSuchBucket":
            raise ServiceUnavailable("the storage bucket does not exist") from exc
        if code in THROTTLE_CODES or http_status(exc) >= 500:
            raise ServiceUnavailable(f"storage failed: {code}") from exc
        raise
    except BotoCoreError as exc:
        raise ServiceUnavailable(f"storage unreachable: {exc}") from exc
