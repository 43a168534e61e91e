"""The one mapping from error types to HTTP responses: ``{"error": {"code", "message", "details"?}}``."""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Flask, Response, jsonify
from pydantic import BaseModel, ConfigDict, Field
from werkzeug.exceptions import HTTPException

from shared import errors as e

log = logging.getLogger(__name__)

# Looked up along the exception's class hierarchy, most specific first.
HTTP_STATUS: dict[type[e.ColorizeError], int] = {
    e.InvalidRequest: 400,
    e.Unauthorized: 401,
    e.NotFound: 404,
    e.Conflict: 409,
    e.PayloadTooLarge: 413,
    e.UnsupportedMediaType: 415,
    e.ModelNotFound: 422,
    e.ItemError: 422,
    e.RateLimited: 429,
    e.NotConfigured: 501,
    e.ModelFileError: 503,
    e.ServiceUnavailable: 503,
}

# werkzeug's own errors (routing, body parsing, size limit), and what the HTTP server refuses
# before the app sees a request (api/serving.py), under our stable codes.
HTTP_CODES: dict[int, str] = {
    400: e.InvalidRequest.code,
    403: "forbidden",
    404: e.NotFound.code,
    405: "method_not_allowed",
    413: e.PayloadTooLarge.code,
    414: "uri_too_long",
    415: e.UnsupportedMediaType.code,
    431: "headers_too_large",
    501: "not_implemented",
}
# Codes given below to failures that are not ColorizeErrors.
INTERNAL_ERROR, HTTP_ERROR = "internal_error", "http_error"


def error_codes() -> list[str]:
    """Every code an error body or an item error may carry."""
    codes = set(HTTP_CODES.values()) | {INTERNAL_ERROR, HTTP_ERROR}
    pending: list[type[e.ColorizeError]] = [e.ColorizeError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        codes.add(cls.code)
    codes.discard(e.ColorizeError.code)
    return sorted(codes)


def _describe_codes(schema: dict[str, Any]) -> None:
    # When the description is generated: every error type defined by then is listed.
    schema["description"] = "Stable machine-readable code, one of: " + ", ".join(error_codes()) + "."


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(json_schema_extra=_describe_codes)
    message: str = Field(description="What went wrong, for a person.")
    # Not nullable in the schema: left out of the body when there are none (None until set).
    details: dict[str, Any] = Field(None, description="Facts about the failure (a limit, a field, a status).")  # type: ignore[arg-type]


# Described as "Error": the body of every error response.
class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    error: ErrorDetail


def status_for(error: e.ColorizeError) -> int:
    for cls in type(error).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


def error_response(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> Response:
    detail = ErrorDetail(code=code, message=message)
    if details:
        detail.details = details  # only then: fields left unset are left out of the body
    response = jsonify(ErrorBody(error=detail).model_dump(mode="json", exclude_unset=True))
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(e.ColorizeError)
    def _colorize_error(error: e.ColorizeError) -> Response:
        status = status_for(error)
        if status >= 500:
            log.warning("request failed: %s", error.message)
        response = error_response(status, error.code, error.message, error.details)
        if isinstance(error, (e.RateLimited, e.ServiceUnavailable)):
            response.headers["Retry-After"] = str(error.retry_after_s)
        if isinstance(error, e.Unauthorized):
            response.headers["WWW-Authenticate"] = 'Bearer realm="colorize"'
        return response

    @app.errorhandler(redis.RedisError)
    def _state_store_error(error: redis.RedisError) -> Response:
        # Redis away, or every connection of the process busy past the wait (api/services.py):
        # either passes, so the client is told to come back rather than that the server broke.
        return _colorize_error(e.ServiceUnavailable(f"the job store is unavailable ({type(error).__name__})"))

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        code = HTTP_CODES.get(status, HTTP_ERROR)
        message = error.description or error.name
        if status == 413:
            message = "the request body exceeds the size limit; use POST /v1/uploads for large files"
        response = error_response(status, code, message)
        valid_methods = getattr(error, "valid_methods", None)
        if status == 405 and valid_methods:
            response.headers["Allow"] = ", ".join(valid_methods)
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, INTERNAL_ERROR, "internal server error")
