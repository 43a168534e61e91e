"""How the C allocator treats the megabyte buffers of image work in a process that colorizes.

glibc's malloc hands out large blocks as fresh mappings and gives freed memory at the top of its
heap back to the kernel, by thresholds that adapt to what was last freed. A worker frees a
batch's images (megabytes each) and allocates the next batch's, so every 4 KiB of them came back
from the kernel as a page fault: about 1,300 an image at 1024 x 1024, some 15 % of the image
maths (``bench/pipeline.py``). Kept instead: blocks under ``MMAP_THRESHOLD_BYTES`` come from
the heap, and up to ``TRIM_THRESHOLD_BYTES`` of freed heap stays for the next batch. Larger
blocks (the planes of a 49-megapixel image) are still mapped and returned when freed.

What is kept is reused by the next batch, so a process's peak, which its memory budget bounds
(``shared.imaging.memory_budget``), does not grow; between batches it holds at most the trim threshold
above its live data.
"""

from __future__ import annotations

import ctypes
import ctypes.util

# glibc's <malloc.h> parameter numbers.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

# The largest mmap threshold glibc accepts on 64-bit systems.
MMAP_THRESHOLD_BYTES = 32 * 1024**2
TRIM_THRESHOLD_BYTES = 256 * 1024**2


def keep_image_memory() -> bool:
    """Set this process's malloc thresholds as the module says; False where the C library is
    not glibc (nothing is changed there)."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
