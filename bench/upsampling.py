"""Cost of joining predicted ab to full-resolution L: bilinear vs guided upsampling, per megapixel.

    python bench/upsampling.py [--repeats 5]

Both paths do the whole join (upsample ab, merge with L, Lab -> 8-bit BGR), measured side by
side in one run on one thread, for a 1 MP and a 12 MP photo.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.colour.lab import join_lightness_and_ab


def best_ms(function: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    ab_small = rng.uniform(-40, 40, (32, 32, 2)).astype(np.float32)
    print(f"{'photo':>12} {'bilinear ms':>12} {'guided ms':>10} {'bilinear ms/MP':>15} {'guided ms/MP':>13}")
    for width, height in ((1000, 1000), (4000, 3000)):
        l_full = cv2.GaussianBlur(rng.uniform(0, 100, (height, width)).astype(np.float32), (0, 0), 3)
        megapixels = width * height / 1e6
        plain = best_ms(partial(join_lightness_and_ab, l_full, ab_small, guided=False), args.repeats)
        guided = best_ms(partial(join_lightness_and_ab, l_full, ab_small, guided=True), args.repeats)
        print(
            f"{width}x{height:>7} {plain:12.1f} {guided:10.1f} {plain / megapixels:15.1f} {guided / megapixels:13.1f}"
        )


if __name__ == "__main__":
    main()
