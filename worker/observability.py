"""Worker metrics and log format, wired to Celery's worker signals.

The main process prepares prometheus_client's multiprocess directory before the pool starts
(pool processes inherit it) and serves the sum of every process's metrics on
``settings.worker_metrics_port`` once the worker is ready. Each task runs with its job bound
to the log context.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    task_postrun,
    task_prerun,
    worker_init,
    worker_ready,
)

from shared.logging import bind_log_context, clear_log_context, use_format
from shared.metrics import prepare_worker_metrics, serve_worker_metrics
from shared.queue.contract import COLORIZE_TASK, ENQUEUED_AT_HEADER, EXPAND_TASK, WEBHOOK_TASK, settings_of
from worker.context import worker_context

if TYPE_CHECKING:
    from celery import Task
    from celery.worker import WorkController
    from celery.worker.consumer import Consumer

log = logging.getLogger(__name__)

_metrics_dir: Path | None = None


@worker_init.connect
def _prepare_metrics(sender: WorkController, **_kwargs: Any) -> None:
    global _metrics_dir
    _metrics_dir = prepare_worker_metrics(settings_of(sender.app))


@worker_ready.connect
def _serve_metrics(sender: Consumer, **_kwargs: Any) -> None:
    settings = settings_of(sender.app)
    if _metrics_dir is not None:
        # Started after the pool forked, so no pool process inherits the listening socket.
        serve_worker_metrics(settings, _metrics_dir)
        log.info("serving worker metrics on port %d", settings.worker_metrics_port)


@after_setup_logger.connect
def _format_logs(logger: logging.Logger, **_kwargs: Any) -> None:
    from celery import current_app

    use_format(logger.handlers, settings_of(current_app))


@after_setup_task_logger.connect
def _format_task_logs(logger: logging.Logger, **_kwargs: Any) -> None:
    from celery import current_app

    use_format(logger.handlers, settings_of(current_app))


@task_prerun.connect
def _observe_queue_wait(task: Task[Any, Any] | None = None, **_kwargs: Any) -> None:
    """Time from publishing to start of an interactive chunk or an expansion (a bulk turn
    observes its chunk's wait in the lane as it claims it)."""
    if task is None or task.name not in (COLORIZE_TASK, EXPAND_TASK) or task.request.retries:
        return
    enqueued_at = task.request.get(ENQUEUED_AT_HEADER)
    if enqueued_at is not None:
        worker_context(task.app).metrics.observe_stage("queue_wait", time.time() - float(enqueued_at))


@task_prerun.connect
def _bind_task(
    task_id: str | None = None, task: Task[Any, Any] | None = None, args: Sequence[Any] | None = None, **_kwargs: Any
) -> None:
    clear_log_context()
    fields: dict[str, Any] = {"task_id": task_id}
    if task is not None and args:
        if task.name in (COLORIZE_TASK, EXPAND_TASK):
            fields["job_id"] = args[0]
        elif task.name == WEBHOOK_TASK and isinstance(args[0], dict):
            fields.update(job_id=args[0].get("job_id"), tenant=args[0].get("tenant"))
    bind_log_context(**fields)


@task_postrun.connect
def _unbind_task(**_kwargs: Any) -> None:
    clear_log_context()
