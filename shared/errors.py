"""Failures a user can act on, one type each, with a stable machine-readable code.

The API maps these types to HTTP statuses in one place (``api/error_responses.py``); workers record
``ItemError`` subclasses as the error of a single item inside a batch.
"""

from __future__ import annotations

from typing import Any


class ColorizeError(Exception):
    code = "error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


# --- request-level errors -------------------------------------------------------------


class InvalidRequest(ColorizeError):
    code = "invalid_request"


class ServiceStoreEndpoint(InvalidRequest):
    """A stored connection would reach the service's own store (its endpoint or its credentials)."""

    code = "service_store_endpoint"


class Unauthorized(ColorizeError):
    code = "unauthorized"


class NotFound(ColorizeError):
    code = "not_found"


class Conflict(ColorizeError):
    code = "conflict"


class PayloadTooLarge(ColorizeError):
    code = "payload_too_large"


class UnsupportedMediaType(ColorizeError):
    code = "unsupported_media_type"


class RateLimited(ColorizeError):
    code = "rate_limited"

    def __init__(self, message: str, retry_after_s: int, **details: Any) -> None:
        super().__init__(message, retry_after_s=retry_after_s, **details)
        self.retry_after_s = retry_after_s


class ServiceUnavailable(ColorizeError):
    code = "unavailable"
    # What its 503 tells a client to wait (Retry-After) before trying again: an outage or a
    # moment of overload, both usually over within seconds.
    retry_after_s = 2


class NotConfigured(ColorizeError):
    """A feature the server has not been set up for (stored connections without a key)."""

    code = "not_configured"


class ModelNotFound(ColorizeError):
    code = "model_not_found"


class ModelFileError(ColorizeError):
    """A model file or manifest is missing, corrupt or does not match its manifest."""

    code = "model_invalid"


class ModelDownloadFailed(ColorizeError):
    """Model files could not be fetched (unreachable, refused, cut off); a rerun resumes."""

    code = "model_download_failed"


# --- per-item errors inside a batch ---------------------------------------------------


class ItemError(ColorizeError):
    code = "item_error"


class CorruptImage(ItemError):
    code = "corrupt_image"


class UnsupportedFormat(ItemError):
    code = "unsupported_format"


class ImageTooLarge(ItemError):
    code = "image_too_large"


class EntryTooLarge(ItemError):
    code = "entry_too_large"


class UnsafeEntry(ItemError):
    """Path traversal, absolute path, link or device entry in an archive."""

    code = "unsafe_entry"


class ArchiveLimitExceeded(ItemError):
    """The archive as a whole broke a limit (entry count, expanded size)."""

    code = "archive_limit_exceeded"


class CorruptArchive(ItemError):
    code = "corrupt_archive"


class InvalidHintsFile(ItemError):
    """An archive's root ``hints.json`` is not JSON, breaks a hint rule or is too big: its job
    fails as it is expanded, before any of its images is counted."""

    code = "invalid_hints_file"


class ProcessingFailed(ItemError):
    """The item crashed the decoder or model on every attempt."""

    code = "processing_failed"


class QuotaExceeded(RateLimited, ItemError):
    """A tenant's quota (jobs in flight, images per day) is used up.

    A refused request (429 with Retry-After), or the error of each archive entry that arrives
    after the daily image quota ran out during expansion.
    """

    code = "quota_exceeded"


class SourceNotFound(ItemError):
    """A source object or URL named by reference does not exist (404, no such key or bucket)."""

    code = "source_not_found"


class SourceForbidden(ItemError):
    """The source refused access (403), or its address is one the service may not reach."""

    code = "source_forbidden"


class SourceUnreachable(ItemError):
    """The source store or URL did not answer, answered an error, or redirected elsewhere."""

    code = "source_unreachable"


class SourceTooSlow(ItemError):
    """A source did not send its object within the whole-transfer deadline, or at the minimum rate."""

    code = "source_too_slow"


class HintsNotSupported(ItemError):
    """Colour hints were given for a model that takes none (its manifest's ``hints`` is false)."""

    code = "hints_not_supported"


class DestinationFailed(ItemError):
    """The item's result could not be written to the job's destination (missing, refused, unreachable)."""

    code = "destination_failed"
