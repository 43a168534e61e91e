"""A colorized item's result, stored: encoded as the job asks, with the source's metadata and
the provenance (:mod:`shared.imaging.encoding`), and written to the job's destination
(:mod:`worker.destination_writes`: the output format's Content-Type, at the item's output path),
to the service's store, or to both."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager

from celery.utils.log import get_task_logger

from shared.colour.engine import Engine
from shared.colour.hints import Hint
from shared.errors import DestinationFailed, ProcessingFailed
from shared.imaging.encoding import encode_result
from shared.imaging.provenance import Provenance
from shared.jobs.records import ItemResult, Job, NewItem
from shared.storage.object_keys import likely_colours_key, result_key
from shared.storage.object_store import Storage
from worker.chunk_items import ColorizedItem, SavedItem, item_hints
from worker.destination_writes import JobDestination

log = get_task_logger(__name__)


class ResultWriter:
    """Where one job's results go, and how they are encoded."""

    def __init__(
        self,
        storage: Storage,
        job: Job,
        jpeg_quality: int,
        timed: Callable[[str], AbstractContextManager[object]],
        destination: JobDestination | None = None,
        registered: Mapping[int, NewItem] | None = None,
    ) -> None:
        self.storage = storage
        self.job = job
        self.jpeg_quality = jpeg_quality
        self._timed = timed  # times a stage (``WorkerMetrics.stage``)
        self.destination = destination  # where results go besides (or instead of) the store
        # The items as registered: where each result goes in the destination, each item's hints.
        self.registered = registered or {}

    def save(self, engine: Engine, result: ColorizedItem) -> SavedItem:
        """The item's outcome once its result is stored, with the bytes the service's store took;
        failed when it cannot be encoded or the destination refuses it."""
        index, output = result.index, self.job.output
        try:
            with self._timed("encode"):
                data = encode_result(
                    result.image, output, self.jpeg_quality, result.metadata, self._provenance(engine, index)
                )
        except Exception:
            extra = {"job_id": self.job.id, "item": index, "tenant": self.job.tenant}
            log.exception("encoding item %s of job %s failed", index, self.job.id, extra=extra)
            return SavedItem(ItemResult.failed(index, ProcessingFailed("the result could not be encoded")))
        if self.destination is not None:
            try:
                with self._timed("storage_put"):
                    self.destination.put(self.registered[index].output_path, data, output.content_type)
            except DestinationFailed as exc:
                return SavedItem(ItemResult.failed(index, exc))
            if not self.destination.keep_in_service:
                return SavedItem(ItemResult.done(index))
        # One PUT: the result object appears whole or not at all, and a redo overwrites it.
        with self._timed("storage_put"):
            stored = self._put_likely_colours(result)
            key = result_key(self.job.tenant, self.job.id, index, output.format)
            self.storage.put_bytes(key, data, content_type=output.content_type)
        return SavedItem(ItemResult.done(index), len(data) + stored)

    def _put_likely_colours(self, result: ColorizedItem) -> int:
        """Before the result: once a result is there, so are its likely colours. The bytes stored."""
        if result.likely_colours is None:
            return 0
        document = result.likely_colours.to_bytes()
        key = likely_colours_key(self.job.tenant, self.job.id, result.index)
        self.storage.put_bytes(key, document, content_type="application/gzip")
        return len(document)

    def _provenance(self, engine: Engine, index: int) -> Provenance:
        """What the result says of how it was made (``shared.imaging.provenance``)."""
        manifest = engine.manifest
        temperature = manifest.temperature if self.job.temperature is None else self.job.temperature
        return Provenance(manifest.name, manifest.sha256, temperature, len(self.hints(index)))

    def hints(self, index: int) -> tuple[Hint, ...]:
        return item_hints(self.job, self.registered.get(index), index)
