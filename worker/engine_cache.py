"""The models one worker process has loaded, each loaded on first use and kept."""

from __future__ import annotations

import os
import threading
import time

from shared.colour.engine import Engine
from shared.colour.model_manifests import load_manifest
from shared.metrics import WorkerMetrics
from shared.settings import Settings


class EngineCache:
    """Loaded engines by model name, each loaded once per process (under a lock: a threads
    pool runs tasks side by side)."""

    def __init__(self, settings: Settings, metrics: WorkerMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._engines: dict[str, Engine] = {}
        self._lock = threading.Lock()

    def get(self, model: str) -> Engine:
        """The loaded engine for ``model``, loading it on first use in this process."""
        with self._lock:
            manifest = load_manifest(self.settings.models_dir, model)
            engine = self._engines.get(manifest.name)
            if engine is None:
                started = time.perf_counter()
                engine = Engine.load(manifest, device=self.settings.device, threads=self._threads())
                seconds = time.perf_counter() - started
                self.metrics.model_load_seconds.labels(manifest.name, engine.device).observe(seconds)
                self._engines[manifest.name] = engine
            return engine

    def _threads(self) -> int:
        if self.settings.engine_threads:
            return self.settings.engine_threads
        return max(1, (os.cpu_count() or 1) // self.settings.worker_processes)
