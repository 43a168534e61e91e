"""Writing a job's results to its destination (:class:`shared.storage.destinations.Destination`): each
result under the destination's prefix at its output path, as a chunk stores it, and
``manifest.json`` once the job has finished (:mod:`shared.jobs.result_manifests`).

The manifest is written by whichever worker's store call finishes the job (a job listener);
a job canceled through the API gets none. A manifest that cannot be written is logged: the
job's items have ended, and its manifest stays in ``results.zip``.
"""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Sequence

from shared.errors import ColorizeError, DestinationFailed, ItemError
from shared.jobs.listeners import JobListener
from shared.jobs.records import ItemResult, Job, JobStatus
from shared.jobs.result_manifests import manifest_bytes
from shared.jobs.store import JobStore
from shared.storage.destinations import MANIFEST_NAME, Destination, DestinationStore
from worker.reference_reader import ReferenceReader

log = logging.getLogger(__name__)


class JobDestination:
    """Where one job's results go, its bucket reached on first use."""

    def __init__(self, job: Job, destination: Destination, reader: ReferenceReader) -> None:
        self.job = job
        self.destination = destination
        self.reader = reader

    @property
    def keep_in_service(self) -> bool:
        return self.destination.keep_in_service

    def put(self, path: str, data: bytes, content_type: str | None = None) -> None:
        """Write ``data`` at ``path`` under the prefix; DestinationFailed when the store refuses."""
        content_type = content_type or mimetypes.guess_type(path)[0] or "application/octet-stream"
        try:
            bucket = self.reader.bucket(self.job.tenant, self.destination.connection)
            bucket.put(self.destination.prefix + path, data, content_type)
        except ItemError as exc:
            raise DestinationFailed(f"destination: {exc.message}", cause=exc.code) from exc


def job_destination(store: DestinationStore, reader: ReferenceReader, job: Job) -> JobDestination | None:
    destination = store.get(job.id)
    return JobDestination(job, destination, reader) if destination is not None else None


class ManifestWriter(JobListener):
    """Writes a finished job's manifest to its destination."""

    def __init__(self, store: DestinationStore, reader: ReferenceReader, jobs: JobStore) -> None:
        """``jobs``: where the finished job's items are read (a store without this writer among
        its listeners: it is built before the store that tells it of the finish)."""
        self.store = store
        self.reader = reader
        self.jobs = jobs

    def job_started(self, job: Job) -> None:
        pass

    def items_finished(self, job: Job, results: Sequence[ItemResult]) -> None:
        pass  # each result went to the destination as its chunk stored it

    def job_finished(self, job: Job) -> None:
        if job.status == JobStatus.CANCELED:
            return
        target = job_destination(self.store, self.reader, job)
        if target is None:
            return
        try:
            target.put(MANIFEST_NAME, manifest_bytes(self.jobs, job), "application/json")
        except ColorizeError as exc:
            log.warning("the manifest of job %s was not written: %s", job.id, exc.message, extra={"job_id": job.id})
