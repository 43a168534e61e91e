"""The terms of a job request as the API reads them: its options, its source by reference, and
its headers (``Idempotency-Key``, ``Prefer: wait``), its colour hints."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from client.types import Hint


def job_options(
    model: str | None, temperature: float | None, callback_url: str | None, events: Sequence[str] | None
) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if model is not None:
        options["model"] = model
    if temperature is not None:
        options["temperature"] = temperature
    if callback_url is not None:
        options["callback_url"] = callback_url
    if events is not None:
        options["events"] = list(events)
    return options


def output_options(format: str | None, quality: int | None, max_side: int | None) -> dict[str, Any]:
    given = {"format": format, "quality": quality, "max_side": max_side}
    return {name: value for name, value in given.items() if value is not None}


def job_headers(idempotency_key: str | None, wait: int | None) -> dict[str, str]:
    # One key for every attempt of a call: a retried request returns the same job.
    headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
    if wait is not None:
        headers["Prefer"] = f"wait={wait}"  # the transport gives the answer that much longer
    return headers


def waited_s(headers: dict[str, str]) -> float:
    """Seconds a job request asks the API to wait (``Prefer: wait=N``)."""
    prefer = headers.get("Prefer", "")
    return float(prefer.removeprefix("wait=")) if prefer.startswith("wait=") else 0.0


def reference_source(
    connection: str | None, prefix: str, keys: Sequence[str] | None, urls: Sequence[str] | None
) -> dict[str, Any]:
    """The ``source`` of a job by reference: a connection's objects (under ``prefix``, or ``keys``), or URLs."""
    if (connection is None) == (urls is None):
        raise ValueError("give a connection (with a prefix or keys) or urls")
    if urls is not None:
        return {"urls": list(urls)}
    return {"connection": connection, **({"keys": list(keys)} if keys is not None else {"prefix": prefix})}


def hints_json(hints: Sequence[Hint] | Mapping[str, Sequence[Hint]]) -> Any:
    """Hints as the API takes them: a list, or an object of lists by item path."""
    if isinstance(hints, Mapping):
        return {path: [hint.to_json() for hint in points] for path, points in hints.items()}
    return [hint.to_json() for hint in hints]
