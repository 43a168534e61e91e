"""Worker metrics and log format, wired to Celery's worker signals.

The main process prepares prometheus_client's multiprocess directory before the pool starts
(pool processes inherit it) and serves the sum of every process's metrics on
``settings.worker_metrics_port`` once the worker is ready. Each task runs with its job bound
to the log context.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

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
from worker.celery_app import COLORIZE_TASK, ENQUEUED_AT_HEADER, EXPAND_TASK, WEBHOOK_TASK
from worker.context import worker_context

log = logging.getLogger(__name__)

_metrics_dir: Path | None = None


@worker_init.connect
def _prepare_metrics(sender=None, **_kwargs) -> None:
    global _metrics_dir
    _metrics_dir = prepare_worker_metrics(sender.app.colorize_settings)


@worker_ready.connect
def _serve_metrics(sender=None, **_kwargs) -> None:
    settings = sender.app.colorize_settings
    if _metrics_dir is not None:
        # Started after the pool forked, so no pool process inherits the listening socket.
        serve_worker_metrics(settings, _metrics_dir)
        log.info("serving worker metrics on port %d", settings.worker_metrics_port)


@after_setup_logger.connect
def _format_logs(logger=None, **_kwargs) -> None:
    from celery import current_app

    use_format(logger.handlers, current_app.colorize_settings)


@after_setup_task_logger.connect
def _format_task_logs(logger=None, **_kwargs) -> None:
    from celery import current_app

    use_format(logger.handlers, current_app.colorize_settings)


@task_prerun.connect
def _observe_queue_wait(task=None, **_kwargs) -> None:
    """Time from publishing to start of an interactive chunk or an expansion (a bulk turn
    observes its chunk's wait in the lane as it claims it)."""
    if task is None or task.name not in (COLORIZE_TASK, EXPAND_TASK) or task.request.retries:
        return
    enqueued_at = task.request.get(ENQUEUED_AT_HEADER)
    if enqueued_at is not None:
        worker_context(task.app).metrics.observe_stage("queue_wait", time.time() - float(enqueued_at))


@task_prerun.connect
def _bind_task(task_id=None, task=None, args=None, **_kwargs) -> None:
    clear_log_context()
    fields = {"task_id": task_id}
    if task is not None and args:
        if task.name in (COLORIZE_TASK, EXPAND_TASK):
            fields["job_id"] = args[0]
        elif task.name == WEBHOOK_TASK and isinstance(args[0], dict):
            fields.update(job_id=args[0].get("job_id"), tenant=args[0].get("tenant"))
    bind_log_context(**fields)


@task_postrun.connect
def _unbind_task(**_kwargs) -> None:
    clear_log_context()
