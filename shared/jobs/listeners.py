"""Who a job store tells of the changes it commits (webhooks, metrics, destinations' manifests).

Each change reaches its listeners once it is committed, with the job as the change left it:
the start and the finish of a job reach exactly one :meth:`JobListener.job_started` and one
:meth:`JobListener.job_finished` call each, and each item's result exactly one
:meth:`JobListener.items_finished` call. A store gets its listeners when it is built
(:class:`shared.jobs.store.JobStore`) and tells them through :class:`JobListeners`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol

from shared.jobs.records import ItemResult, Job

log = logging.getLogger(__name__)


class JobListener(Protocol):
    """One method per event; a listener implements each (mypy holds a subclass that leaves one
    out abstract), those it has nothing to do on as no-ops."""

    def job_started(self, job: Job) -> None:
        """The job moved from queued to running."""

    def items_finished(self, job: Job, results: Sequence[ItemResult]) -> None:
        """These items ended (done or failed), each for the first and only time."""

    def job_finished(self, job: Job) -> None:
        """The job ended: succeeded, partially succeeded, failed or canceled."""


class JobListeners(JobListener):
    """Several listeners told as one, in order. The change is committed: a listener failing
    (a lost webhook) is logged, and neither undoes nor repeats it, nor keeps it from the others."""

    def __init__(self, listeners: Sequence[JobListener] = ()) -> None:
        self.members = tuple(listeners)

    def job_started(self, job: Job) -> None:
        for listener in self.members:
            with _logged_failure(listener, "job_started"):
                listener.job_started(job)

    def items_finished(self, job: Job, results: Sequence[ItemResult]) -> None:
        for listener in self.members:
            with _logged_failure(listener, "items_finished"):
                listener.items_finished(job, results)

    def job_finished(self, job: Job) -> None:
        for listener in self.members:
            with _logged_failure(listener, "job_finished"):
                listener.job_finished(job)


@contextmanager
def _logged_failure(listener: JobListener, event: str) -> Iterator[None]:
    try:
        yield
    except Exception:
        log.exception("job listener %s failed on %s", type(listener).__name__, event)
