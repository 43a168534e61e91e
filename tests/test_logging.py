"""Log lines: one JSON object per line with the job, item and tenant they concern, or text."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from shared.logging import ContextFilter, bind_log_context, clear_log_context, configure_logging, use_format
from shared.settings import Settings


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("colorize.test-logging")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield logger, stream, handler
    logger.removeHandler(handler)
    clear_log_context()


def test_json_lines_carry_time_level_logger_message_and_context(captured) -> None:
    logger, stream, handler = captured
    use_format([handler], Settings(log_format="json"))
    bind_log_context(job_id="j-1", tenant="acme")
    logger.info("item %d stored", 3, extra={"item": 3})
    logger.warning("line one\nline two")
    clear_log_context()
    logger.error("outside any job")
    first, second, third = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "item 3 stored" and first["level"] == "INFO"
    assert first["logger"] == "colorize.test-logging" and first["time"].endswith("+00:00")
    assert (first["job_id"], first["item"], first["tenant"]) == ("j-1", 3, "acme")
    assert second["message"] == "line one\nline two" and second["job_id"] == "j-1"
    assert "job_id" not in third and third["level"] == "ERROR"


def test_exceptions_stay_on_one_line(captured) -> None:
    logger, stream, handler = captured
    use_format([handler], Settings(log_format="json"))
    try:
        raise ValueError("bad pixel")
    except ValueError:
        logger.exception("decoding failed", extra={"job_id": "j-2", "item": 7})
    [line] = stream.getvalue().splitlines()
    record = json.loads(line)
    assert "ValueError: bad pixel" in record["exc_info"] and record["item"] == 7


def test_explicit_fields_win_over_the_bound_context(captured) -> None:
    logger, stream, handler = captured
    use_format([handler], Settings(log_format="json"))
    bind_log_context(job_id="task-job", item=None)
    logger.info("x", extra={"job_id": "explicit"})
    assert json.loads(stream.getvalue())["job_id"] == "explicit"


def test_text_format_keeps_the_formatter_and_adds_the_context(captured) -> None:
    logger, stream, handler = captured
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s [%(job_id)s]"))
    use_format([handler], Settings(log_format="text"))
    use_format([handler], Settings(log_format="text"))
    assert sum(isinstance(f, ContextFilter) for f in handler.filters) == 1
    bind_log_context(job_id="j-3")
    logger.info("plain")
    assert stream.getvalue() == "INFO plain [j-3]\n"


def test_configure_logging_installs_one_json_root_handler() -> None:
    root = logging.getLogger()
    before = list(root.handlers), root.level
    try:
        configure_logging(Settings(log_format="text"))
        assert root.handlers == before[0]
        configure_logging(Settings(log_format="json"))
        configure_logging(Settings(log_format="json"))
        added = [h for h in root.handlers if h not in before[0]]
        assert len(added) == 1
    finally:
        for handler in [h for h in root.handlers if h not in before[0]]:
            root.removeHandler(handler)
        root.setLevel(before[1])
