"""HTTP for the client: one urllib3 pool, retries with backoff, JSON, streamed bodies, error mapping.

urllib3 does the retrying: connection failures always (nothing reached the server), and
5xx/429 responses and dropped connections only for requests marked idempotent, honouring
``Retry-After``. The ``Authorization`` header goes only to the API's own origin, never to the
storage service behind a presigned URL.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import HTTPError
from urllib3.util import Retry

from client.errors import CONNECTION_ERROR, INVALID_RESPONSE, ClientError
from client.types import resolve_link

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# A server asking for a longer pause than this gets a retry after this long anyway, and
# the error (with its retry_after) if it still refuses.
MAX_RETRY_AFTER_S = 60
MAX_BACKOFF_S = 30.0
USER_AGENT = "colorize-client/0.1"


class Backoff(Retry):
    """urllib3's Retry with the first retry delayed too, jitter on every delay, and a cap on Retry-After."""

    def get_backoff_time(self) -> float:
        errors = 0
        for attempt in reversed(self.history):
            if attempt.redirect_location is not None:
                break
            errors += 1
        if errors == 0:
            return 0.0
        ceiling: float = min(self.backoff_max, self.backoff_factor * 2 ** (errors - 1))
        # Half fixed, half random: retries of many clients spread out, none comes back at once.
        return ceiling / 2 + random.random() * ceiling / 2

    def parse_retry_after(self, retry_after: str) -> float:
        return min(super().parse_retry_after(retry_after), MAX_RETRY_AFTER_S)


class Transport:
    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        timeout_s: float,
        retries: int,
        backoff_s: float,
        connections_per_host: int = 1,
    ) -> None:
        if not urlsplit(base_url).scheme or not urlsplit(base_url).netloc:
            raise ValueError(f"the API URL must be absolute (http://host:port), not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._origin = _origin(self.base_url)
        self._api_key = api_key
        self._retries = retries
        self._backoff_s = backoff_s
        self._pool = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=min(timeout_s, 10.0), read=timeout_s),
            headers={"User-Agent": USER_AGENT},
            maxsize=connections_per_host,  # one per download thread, all kept alive
        )

    def _timeout_with(self, extra_read_s: float) -> urllib3.Timeout:
        timeout = self._pool.connection_pool_kw["timeout"]
        return urllib3.Timeout(connect=timeout.connect_timeout, read=(timeout.read_timeout or 0) + extra_read_s)

    def url(self, path_or_url: str) -> str:
        return resolve_link(self.base_url, path_or_url)

    def retry_policy(self, idempotent: bool, redirects: int | bool = False) -> Retry:
        return Backoff(
            total=None,
            connect=self._retries,  # nothing reached the server: always safe to try again
            # A request that may have reached the server is sent again only when idempotent.
            read=self._retries if idempotent else 0,
            status=self._retries if idempotent else 0,
            other=0,
            redirect=redirects,
            allowed_methods=None if idempotent else Retry.DEFAULT_ALLOWED_METHODS,
            status_forcelist=RETRY_STATUSES,
            backoff_factor=self._backoff_s,
            backoff_max=MAX_BACKOFF_S,
            raise_on_status=False,
            raise_on_redirect=False,
        )

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        idempotent: bool,
        json_body: Any = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        authorize: bool = True,
        follow_redirects: bool = False,
        allow_status: frozenset[int] = frozenset(),
        extra_read_s: float = 0.0,
    ) -> urllib3.BaseHTTPResponse:
        """Send one request (retried per the policy); raise ClientError for a 4xx/5xx not in ``allow_status``.
        ``extra_read_s``: time the server is asked to take beyond the usual (``Prefer: wait``).

        With ``stream`` the body is left unread: read it with ``response.stream()`` and call
        ``response.release_conn()``.
        """
        url = self.url(path_or_url)
        all_headers = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode("utf-8")
            all_headers["Content-Type"] = "application/json"
        # Presigned storage URLs carry their own signature; an Authorization header would break it.
        if authorize and self._api_key and _origin(url) == self._origin:
            all_headers["Authorization"] = f"Bearer {self._api_key}"
        timeout: dict[str, Any] = {"timeout": self._timeout_with(extra_read_s)} if extra_read_s else {}
        try:
            response = self._pool.request(
                method,
                url,
                body=body,
                headers=all_headers,
                retries=self.retry_policy(idempotent, 5 if follow_redirects else False),
                redirect=follow_redirects,
                preload_content=not stream,
                **timeout,
            )
        except HTTPError as exc:
            raise ClientError(CONNECTION_ERROR, f"{method} {_display(url)} failed: {_reason(exc)}") from exc
        if response.status >= 400 and response.status not in allow_status:
            data = response.read() if stream else response.data
            response.release_conn()
            raise ClientError.from_response(response.status, data, response.headers.get("Retry-After"), _display(url))
        return response

    def json(self, method: str, path_or_url: str, *, idempotent: bool, **kwargs: Any) -> Any:
        response = self.request(method, path_or_url, idempotent=idempotent, **kwargs)
        url = self.url(path_or_url)
        try:
            return json.loads(response.data)
        except ValueError as exc:
            raise ClientError(
                INVALID_RESPONSE, f"{method} {_display(url)} did not return JSON", response.status
            ) from exc

    def streaming_retry(self) -> Retry:
        """A fresh policy for retrying a whole download whose body was cut off midway."""
        return self.retry_policy(idempotent=True)

    def close(self) -> None:
        self._pool.clear()


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, f"{parts.hostname}:{port}"


def _display(url: str) -> str:
    """The URL without its query: presigned URLs carry credentials there."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _reason(exc: HTTPError) -> str:
    """The cause without urllib3's connection-object prefix (``HTTPConnection(host=..., port=...): ...``)."""
    text = str(getattr(exc, "reason", None) or exc)
    return (
        text.split("): ", 1)[1] if text.startswith(("HTTPConnection(", "HTTPSConnection(")) and "): " in text else text
    )


def path_segment(value: str, what: str = "job id") -> str:
    """``value`` as one segment of a URL path; ClientError when it would be more, or none."""
    if not value or "/" in value or value in (".", ".."):
        raise ClientError("invalid_request", f"{value!r} is not a {what}")
    return value
