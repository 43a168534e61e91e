"""How much memory a worker process may spend on images, and so how many of them it may hold.

A colorize worker process holds at most three batches at once: one being decoded (its
images' decoder buffers and 8-bit copies), one being colorized (8-bit input, its L, 8-bit
output), one being encoded and stored (8-bit output, the encoder's buffers, the file). With ``Limits.worker_memory_bytes``
the whole process's bound, what is left after the process itself (``BASELINE_BYTES``) is split
between the three in the proportions a largest image needs (decoding a 16-bit RGBA image
costs ``MAX_DECODE_BYTES_PER_PIXEL``); each batch keeps within its share:

* its pixels within ``batch_pixels``, which covers colorizing and storing them;
* the bytes decoding its images takes within ``batch_decode_bytes``.

An image alone beyond either share cannot be processed within the budget and is refused
(``ImageTooLarge``); any other image is processed, in a batch of its own if need be.

Storing costs what the job's output format takes (``STORE_BYTES_PER_PIXEL``), and with a
``max_side`` the scaled copy beside the colorized image (``SCALED_COPY_BYTES_PER_PIXEL``): the
shares of a PNG or WebP job, or of one that scales, are smaller than those of a plain JPEG
one (``MemoryBudget.of``). Images are
first checked against the JPEG shares, as their headers are read before any job's format
matters (``shared.imaging.decoding.probe_image``), then by the worker against their job's.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.imaging.output_options import DEFAULT_OUTPUT, OutputFormat, OutputOptions
from shared.setting_types import Limits

MIB = 1024**2
# The process before any image: interpreter, libraries, a loaded model and the compiled image
# maths (about 300 MiB measured, numba and its kernels about 110 of it, the colour L table 9),
# and the colorizer's row buffers (a few MiB).
BASELINE_BYTES = 384 * MIB
# Per pixel of a batch: colorizing it (8-bit input and output, 2 bytes of L codes for a
# colour image); storing it: the 8-bit output (3) and what encoding it holds at its peak beyond
# that, measured on 12-megapixel noisy photos (bench/encoding_memory.py): JPEG 1.5 (its file
# and the copy joined with the metadata), PNG 5.8 (zlib's buffers, the larger file and its
# copy), WebP 16.1 (libwebp's RGBA and YUV pictures and its analysis), each rounded up.
COLORIZE_BYTES_PER_PIXEL = 8
STORE_BYTES_PER_PIXEL: dict[OutputFormat, int] = {OutputFormat.JPEG: 5, OutputFormat.PNG: 10, OutputFormat.WEBP: 20}
# A result scaled down to a max_side is a copy beside the colorized image, at most as large.
SCALED_COPY_BYTES_PER_PIXEL = 3
# Decoding a 16-bit RGBA image: OpenCV's decoder holds twice its 8 bytes a pixel at its peak.
MAX_DECODE_BYTES_PER_PIXEL = 2 * 8


@dataclass(frozen=True)
class MemoryBudget:
    """The shares of one worker process's memory budget (``Limits.worker_memory_bytes``)."""

    total_bytes: int
    store_bytes_per_pixel: int = STORE_BYTES_PER_PIXEL[OutputFormat.JPEG]

    @classmethod
    def of(cls, limits: Limits, output: OutputOptions = DEFAULT_OUTPUT) -> MemoryBudget:
        """The budget of a worker process writing results as ``output`` says."""
        scaled = SCALED_COPY_BYTES_PER_PIXEL if output.max_side is not None else 0
        return cls(limits.worker_memory_bytes, STORE_BYTES_PER_PIXEL[output.format] + scaled)

    @property
    def batch_pixels(self) -> int:
        """The most pixels one batch may have."""
        per_pixel = MAX_DECODE_BYTES_PER_PIXEL + COLORIZE_BYTES_PER_PIXEL + self.store_bytes_per_pixel
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
