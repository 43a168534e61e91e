"""Fault hooks for test workers, loaded with ``celery worker -I tests.worker_faults``.

Each chunk announces itself on a Redis list and lingers before inference, so a test can kill
the worker while it holds that chunk; an item whose path contains ``poison`` kills its pool
process every time it is colorized, like an image that crashes the decoder.
"""

from __future__ import annotations

import json
import os
import signal
import time

import redis
from celery import current_app

from worker import tasks

CHUNKS_KEY = "colorize-test:chunks"
HOLD_S = 1.0
POISON_MARK = "poison"

_colorize = tasks.ChunkRun._colorize


def _announce(run: tasks.ChunkRun, indices: list[int]) -> None:
    client = redis.Redis.from_url(current_app.colorize_settings.redis_url)
    record = {"worker_pid": os.getppid(), "process_pid": os.getpid(), "job": run.job.id, "indices": indices}
    client.rpush(CHUNKS_KEY, json.dumps(record))


def _faulty_colorize(self: tasks.ChunkRun, engine, items):
    indices = [item.index for item in items]
    if any(POISON_MARK in self.ctx.jobs.item(self.job.id, i).path for i in indices):
        os.kill(os.getpid(), signal.SIGKILL)
    _announce(self, indices)
    time.sleep(HOLD_S)
    return _colorize(self, engine, items)


tasks.ChunkRun._colorize = _faulty_colorize
