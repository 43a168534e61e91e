"""Pixel loops compiled to machine code with numba, for the image maths OpenCV has no single
call for (``shared.colour.lab_join``, ``shared.colour.grey_lightness``).

Compiled code is cached on disk (beside the module, in the user's cache directory, or in
``NUMBA_CACHE_DIR``): about two seconds per kernel the first time, milliseconds after. Where none
of those is writable, each process compiles for itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba


def compiled(function: Callable[..., Any]) -> Any:
    """``function`` compiled by numba: fast maths (reassociation, no NaN or infinity checks;
    the kernels see neither), without the interpreter lock, cached where numba can."""
    try:
        return numba.njit(cache=True, fastmath=True, nogil=True)(function)
    except RuntimeError:  # numba found no writable cache directory
        return numba.njit(fastmath=True, nogil=True)(function)
