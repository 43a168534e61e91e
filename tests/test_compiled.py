"""shared.colour.compiled: kernels compile where numba has nowhere to cache them (a read-only install
run by a user without a home directory, as in the worker image without NUMBA_CACHE_DIR)."""

from __future__ import annotations

import pytest
from numba.core import caching

from shared.colour.compiled import compiled


def add_one(value: int) -> int:
    return value + 1


def test_a_kernel_compiles_without_a_writable_cache_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(caching.CacheImpl, "_locator_classes", [])  # numba finds no cache directory
    kernel = compiled(add_one)
    assert kernel(41) == 42
    assert kernel.signatures  # compiled, not run by the interpreter
