"""The one mapping from error types to HTTP responses: ``{"error": {"code", "message", "details"?}}``."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
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
    e.ModelFileError: 503,
    e.ServiceUnavailable: 503,
}

# werkzeug's own errors (routing, body parsing, size limit) under our stable codes.
HTTP_CODES: dict[int, str] = {
    400: e.InvalidRequest.code,
    404: e.NotFound.code,
    405: "method_not_allowed",
    413: e.PayloadTooLarge.code,
    415: e.UnsupportedMediaType.code,
}


def status_for(error: e.ColorizeError) -> int:
    for cls in type(error).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


def error_response(status: int, body: dict) -> Response:
    response = jsonify({"error": body})
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(e.ColorizeError)
    def _colorize_error(error: e.ColorizeError) -> Response:
        status = status_for(error)
        if status >= 500:
            log.warning("request failed: %s", error.message)
        response = error_response(status, error.to_dict())
        if isinstance(error, e.RateLimited):
            response.headers["Retry-After"] = str(error.retry_after_s)
        if isinstance(error, e.Unauthorized):
            response.headers["WWW-Authenticate"] = 'Bearer realm="colorize"'
        return response

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        code = HTTP_CODES.get(status, "http_error")
        message = error.description or error.name
        if status == 413:
            message = "the request body exceeds the size limit; use POST /v1/uploads for large files"
        response = error_response(status, {"code": code, "message": message})
        valid_methods = getattr(error, "valid_methods", None)
        if status == 405 and valid_methods:
            response.headers["Allow"] = ", ".join(valid_methods)
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, {"code": "internal_error", "message": "internal server error"})
