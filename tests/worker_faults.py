"""Fault hooks for test workers, loaded with ``celery worker -I tests.worker_faults``.

Importing this module patches the worker: only worker processes may import it; tests take the
marks from :mod:`tests.fault_marks`.

Each chunk announces itself on a Redis list and lingers before inference, so a test can kill
the worker while it holds that chunk. Items misbehave by their path, every time they are
processed:

- ``poison``: kills its pool process during inference (the model crashes);
- ``crash-decoder``: kills its pool process while it is decoded (the decoder crashes);
- ``hang-forever``: blocks inference past every time limit where the soft limit cannot interrupt it
  (stuck in native code), so only the hard limit ends it;
- ``model-error``: makes inference raise (the model refuses this input);
- ``crash-after-save``: kills its pool process once its result is stored, before the item is
  recorded as done.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import redis
from celery import current_app

from shared.errors import NotFound
from shared.jobs.records import ItemStatus
from shared.jobs.store import JobStore
from tests.fault_marks import (
    DECODER_CRASH_MARK,
    HANG_MARK,
    HOLD_S,
    MODEL_ERROR_MARK,
    POISON_MARK,
    SAVED_CRASH_MARK,
    chunks_key,
)
from worker import chunk_pipeline
from worker.chunk_pipeline import ChunkRun

_colorize = ChunkRun._colorize
_decode = ChunkRun._decode
_colorize_batch = chunk_pipeline.colorize_batch
_record = JobStore.record
# Set while a batch holding a model-error item is inferred (the batch is split, then retried alone).
_batch = threading.local()


def _announce(run: ChunkRun, indices: list[int]) -> None:
    settings = current_app.colorize_settings
    client = redis.Redis.from_url(settings.redis_url)
    record = {
        "worker_pid": os.getppid(),
        "process_pid": os.getpid(),
        "job": run.job.id,
        "indices": indices,
        "at": time.time(),
    }
    client.rpush(chunks_key(settings), json.dumps(record))


def _path(run: ChunkRun, index: int) -> str:
    return run.ctx.jobs.item(run.job.id, index).path


def _hang() -> None:
    # The soft time limit arrives as SIGUSR1: blocked, as if the process were stuck in C code.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    time.sleep(3600)


def _faulty_colorize(self: ChunkRun, engine, items):
    indices = [item.index for item in items]
    paths = [_path(self, i) for i in indices]
    if any(POISON_MARK in p for p in paths):
        os.kill(os.getpid(), signal.SIGKILL)
    if any(HANG_MARK in p for p in paths):
        _hang()
    _announce(self, indices)
    time.sleep(HOLD_S)
    _batch.model_error = any(MODEL_ERROR_MARK in p for p in paths)
    try:
        return _colorize(self, engine, items)
    finally:
        _batch.model_error = False


def _faulty_decode(self: ChunkRun, item):
    if DECODER_CRASH_MARK in _path(self, item.index):
        os.kill(os.getpid(), signal.SIGKILL)
    return _decode(self, item)


def _faulty_colorize_batch(engine, images, temperature=None, hints=None):
    if getattr(_batch, "model_error", False):
        raise RuntimeError("the model cannot process this input")
    return _colorize_batch(engine, images, temperature, hints)


def _faulty_record(self: JobStore, job_id: str, results, begin=()):
    done = [r.index for r in results if r.status == ItemStatus.DONE]
    try:
        crash = any(SAVED_CRASH_MARK in self.item(job_id, index).path for index in done)
    except NotFound:
        crash = False  # the job is gone (deleted): the record finds it so, as without the hook
    if crash:
        os.kill(os.getpid(), signal.SIGKILL)
    return _record(self, job_id, results, begin)


ChunkRun._colorize = _faulty_colorize
ChunkRun._decode = _faulty_decode
chunk_pipeline.colorize_batch = _faulty_colorize_batch
JobStore.record = _faulty_record
