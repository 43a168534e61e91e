"""How much memory a worker process may spend on images, and so how many of them it may hold.

A colorize worker process holds at most three batches at once: one being decoded (its
images' decoder buffers and 8-bit copies), one being colorized (8-bit input, its L, 8-bit
output), one being encoded and stored (8-bit output, its JPEG). With ``Limits.worker_memory_bytes``
the whole process's bound, what is left after the process itself (``BASELINE_BYTES``) is split
between the three in the proportions a largest image needs (decoding a 16-bit RGBA image
costs ``MAX_DECODE_BYTES_PER_PIXEL``); each batch keeps within its share:

* its pixels within ``batch_pixels``, which covers colorizing and storing them;
* the bytes decoding its images takes within ``batch_decode_bytes``.

An image alone beyond either share cannot be processed within the budget and is refused
(``ImageTooLarge``); any other image is processed, in a batch of its own if need be.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.setting_types import Limits

MIB = 1024**2
# The process before any image: interpreter, libraries, a loaded model (about 250 MiB
# measured), and the colorizer's buffers (about 100 MiB at most).
BASELINE_BYTES = 384 * MIB
# Per pixel of a batch: colorizing it (8-bit input and output, 4 bytes of float L for a
# colour image), storing it (8-bit output, its JPEG and one copy of that).
COLORIZE_BYTES_PER_PIXEL = 10
STORE_BYTES_PER_PIXEL = 5
# Decoding a 16-bit RGBA image: OpenCV's decoder holds twice its 8 bytes a pixel at its peak.
MAX_DECODE_BYTES_PER_PIXEL = 2 * 8


@dataclass(frozen=True)
class MemoryBudget:
    """The shares of one worker process's memory budget (``Limits.worker_memory_bytes``)."""

    total_bytes: int

    @classmethod
    def of(cls, limits: Limits) -> MemoryBudget:
        return cls(limits.worker_memory_bytes)

    @property
    def batch_pixels(self) -> int:
        """The most pixels one batch may have."""
        per_pixel = MAX_DECODE_BYTES_PER_PIXEL + COLORIZE_BYTES_PER_PIXEL + STORE_BYTES_PER_PIXEL
        return max(0, self.total_bytes - BASELINE_BYTES) // per_pixel

    @property
    def batch_decode_bytes(self) -> int:
        """The most memory decoding one batch's images may take, all at once."""
        return self.batch_pixels * MAX_DECODE_BYTES_PER_PIXEL

    def refusal(self, pixels: int, decode_bytes: int) -> str | None:
        """Why an image of ``pixels`` pixels whose decoding takes ``decode_bytes`` cannot be
        processed within the budget, or None when it can."""
        if pixels > self.batch_pixels:
            return f"{pixels} pixels; at most {self.batch_pixels} fit"
        if decode_bytes > self.batch_decode_bytes:
            return f"decoding it takes {decode_bytes // MIB} MiB; at most {self.batch_decode_bytes // MIB} MiB fit"
        return None
