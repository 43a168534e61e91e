"""Memory that writing one result takes beyond its 8-bit image, per output format.

    python bench/encoding_memory.py [--width 4000] [--height 3000]

For each format and three levels of noise on a smooth photo-like image (noise is what makes
files, and encoders' buffers, large), a fresh process makes the image a strip at a time, then
writes it with ``shared.imaging.encoding.encode_result`` (metadata and provenance included)
and reports the file's size and the rise of its peak resident memory, both per pixel. The
shares of ``shared.imaging.memory_budget.STORE_BYTES_PER_PIXEL`` are these peaks, rounded up, plus
the 3 bytes of the image itself.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOISE_LEVELS = (3, 12, 40)

MEASURE = """
import json, resource, sys
import numpy as np
sys.path.insert(0, {root!r})
from shared.imaging.metadata import NO_METADATA
from shared.imaging.output_options import OutputFormat, OutputOptions
from shared.imaging.provenance import Provenance
from shared.imaging.encoding import encode_result

fmt, width, height, noise = OutputFormat({fmt!r}), {width}, {height}, {noise}
rng = np.random.default_rng(0)
x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
image = np.empty((height, width, 3), np.uint8)
for top in range(0, height, 100):
    rows = min(100, height - top)
    y = np.linspace(top / height, (top + rows) / height, rows, dtype=np.float32)[:, None]
    for channel in range(3):
        plane = x * (60 + 40 * channel) + y * 120 + 40 + rng.normal(0, noise, (rows, width)).astype(np.float32)
        image[top : top + rows, :, channel] = np.clip(plane, 0, 255)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
quality = None if fmt == OutputFormat.PNG else 90
data = encode_result(image, OutputOptions(fmt, quality), 90, NO_METADATA, Provenance("bench", "0" * 64, 0.38))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({{"file": len(data) / image.shape[0] / image.shape[1], "peak": (after - before) / image.shape[0] / image.shape[1]}}))
"""


def measure(fmt: str, width: int, height: int, noise: int) -> dict[str, float]:
    code = MEASURE.format(root=str(ROOT), fmt=fmt, width=width, height=height, noise=noise)
    output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    args = parser.parse_args()
    print(f"{args.width} x {args.height}; bytes per pixel beyond the 8-bit image")
    print(f"{'format':<6} {'noise':>5} {'file':>6} {'peak':>6}")
    for fmt in ("jpeg", "png", "webp"):
        for noise in NOISE_LEVELS:
            figures = measure(fmt, args.width, args.height, noise)
            print(f"{fmt:<6} {noise:>5} {figures['file']:>6.2f} {figures['peak']:>6.2f}")


if __name__ == "__main__":
    main()
