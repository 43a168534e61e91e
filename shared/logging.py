"""Log records as text, or as one JSON object per line, carrying the job, item and tenant they concern.

``settings.log_format`` picks the format (``COLORIZE_LOG_FORMAT=text|json``): ``text`` for a
person at a terminal (the default), ``json`` for a log collector (production). A JSON line::

    {"time": "2026-01-02T03:04:05.678+00:00", "level": "INFO", "logger": "worker.tasks",
     "message": "...", "job_id": "...", "item": 3, "tenant": "acme", "task_id": "..."}

``job_id``, ``item``, ``tenant`` and ``task_id`` appear when known: passed with ``extra=`` on
the call, or bound for the code running in this context (a Celery task binds its job) with
:func:`bind_log_context`. The JSON encoding is python-json-logger's.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter

from shared.settings import Settings

CONTEXT_FIELDS = ("job_id", "item", "tenant", "task_id")

# Never mutated in place: binding sets a new mapping, so contexts copied into tasks stay apart.
_context: ContextVar[Mapping[str, Any]] = ContextVar("colorize_log_context", default=MappingProxyType({}))


def bind_log_context(**fields: Any) -> None:
    """Add fields to every record logged from this context from now on (None values are dropped)."""
    merged = {**_context.get(), **{k: v for k, v in fields.items() if v is not None}}
    _context.set(merged)


def clear_log_context() -> None:
    _context.set({})


class ContextFilter(logging.Filter):
    """Copies the bound context onto each record; fields passed with ``extra=`` win."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def json_formatter() -> logging.Formatter:
    return JsonFormatter(
        "{levelname}{name}{message}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
        json_ensure_ascii=False,
    )


def use_format(handlers: Iterable[logging.Handler], settings: Settings) -> None:
    """Give handlers someone else set up (Celery's) the configured format and the context fields."""
    for handler in handlers:
        if settings.log_format == "json":
            handler.setFormatter(json_formatter())
        if not any(isinstance(f, ContextFilter) for f in handler.filters):
            handler.addFilter(ContextFilter())


class _ColorizeHandler(logging.StreamHandler[TextIO]):
    """The root handler :func:`configure_logging` installs (and replaces when called again)."""


def configure_logging(settings: Settings, level: int = logging.INFO) -> None:
    """For a process whose logging nobody else sets up (the API): JSON lines on stderr when
    asked for; in text mode the process's own setup (gunicorn's, a test runner's) stays."""
    if settings.log_format != "json":
        return
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _ColorizeHandler)]:
        root.removeHandler(handler)
    handler = _ColorizeHandler(sys.stderr)
    use_format([handler], settings)
    root.addHandler(handler)
    root.setLevel(level)
