"""Steady-state images per second of one engine, shared by the benchmarks."""

from __future__ import annotations

import time

import numpy as np

from shared.colour.engine import Engine


def images_per_second(engine: Engine, batch: int, seconds: float = 3.0) -> float:
    """Forward passes of ``batch`` random L planes at the engine's input size for ``seconds``."""
    size = engine.input_size
    l_input = np.random.default_rng(0).uniform(0, 100, (batch, size, size)).astype(np.float32)
    engine.predict_ab(l_input)  # warm-up: kernel selection, allocations
    engine.predict_ab(l_input)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        engine.predict_ab(l_input)
        done += batch
    return done / (time.perf_counter() - started)
