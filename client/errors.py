"""The one error type of the client: what the API (or the network) said went wrong."""

from __future__ import annotations

import json
from typing import Any

# Codes the client itself assigns where the API gave none.
CONNECTION_ERROR = "connection_error"
HTTP_ERROR = "http_error"
INVALID_RESPONSE = "invalid_response"
WAIT_TIMEOUT = "wait_timeout"
UNSAFE_PATH = "unsafe_path"


class ClientError(Exception):
    """A failed request: the API's stable error ``code`` and ``message``, the HTTP ``status``
    (None when no response came back), ``details``, and ``retry_after`` seconds for 429."""

    def __init__(
        self,
        code: str,
        message: str,
        status: int | None = None,
        details: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message
        self.status = status
        self.details = details or {}
        self.retry_after = retry_after

    @classmethod
    def from_response(cls, status: int, body: bytes, retry_after: str | None, source: str) -> ClientError:
        """Our API's ``{"error": {...}}`` body, or any other server's error page (a storage service's XML)."""
        seconds = _seconds(retry_after)
        try:
            error = json.loads(body).get("error")
        except (ValueError, AttributeError):
            error = None
        if isinstance(error, dict) and isinstance(error.get("code"), str):
            details = error.get("details") if isinstance(error.get("details"), dict) else None
            return cls(error["code"], str(error.get("message", "")), status, details, seconds)
        text = body[:300].decode("utf-8", "replace").strip()
        message = f"HTTP {status} from {source}" + (f": {text}" if text else "")
        return cls(HTTP_ERROR, message, status, None, seconds)


class WaitTimeout(ClientError):
    """``Client.wait`` gave up before the job finished; the job itself goes on."""

    def __init__(self, job_id: str, timeout_s: float) -> None:
        super().__init__(
            WAIT_TIMEOUT, f"job {job_id} did not finish within {timeout_s:g} s", details={"job_id": job_id}
        )


def _seconds(retry_after: str | None) -> float | None:
    if retry_after is None:
        return None
    try:
        return max(float(retry_after), 0.0)
    except ValueError:
        return None  # an HTTP date: rare from an API, and only a hint
