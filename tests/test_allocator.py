"""The allocator keeps image memory: a second batch of megabyte buffers costs no page faults."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from shared.settings import PROJECT_ROOT

BATCHES = """
import json, resource, sys
import numpy as np
from shared.imaging.allocator import keep_image_memory

kept = keep_image_memory() if sys.argv[1] == "keep" else None
faults = []
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    batch = [np.ones((1024, 1024, 3), np.uint8) for _ in range(8)]  # a batch's images, touched
    del batch
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
json.dump({"kept": kept, "faults": faults}, sys.stdout)
"""


def batch_faults(mode: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", BATCHES, mode], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_later_batches_reuse_memory_instead_of_faulting_it_in_again() -> None:
    pages = 8 * 1024 * 1024 * 3 // 4096
    default, kept = batch_faults("default"), batch_faults("keep")
    assert kept["kept"] is True
    assert all(faults > pages / 2 for faults in default["faults"])  # without: every batch faults its pages in
    assert all(faults < pages / 20 for faults in kept["faults"][1:])
