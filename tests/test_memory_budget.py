"""The worker's memory budget: what decoding takes, batches within the budget, refusals of
only what cannot fit (``bench/memory.py`` measures the bound on 49 MP 16-bit RGBA PNGs)."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from shared.errors import ImageTooLarge
from shared.ids import new_id
from shared.imaging.decoding import DECODE_OVERHEAD_BYTES, DecodeCost, decode_cost, decode_image
from shared.imaging.memory_budget import BASELINE_BYTES, STORE_BYTES_PER_PIXEL, MemoryBudget
from shared.imaging.output_options import OutputFormat, OutputOptions
from shared.jobs.records import JobStatus
from shared.setting_types import Limits
from shared.settings import Settings
from shared.storage.object_keys import result_key, source_key
from tests.integration_fixtures import TEST_MODEL, with_own_keys
from tests.test_item_inputs import Published, expand
from worker.batching import memory_batches
from worker.chunk_pipeline import ChunkRun
from worker.context import WorkerContext
from worker.expansion import Expander, ExpansionLease

MIB = 1024**2
SMALL_BUDGET = MemoryBudget(512 * MIB)  # the least allowed: about 4.6 million pixels a batch
TENANT = "local"


def png(height: int, width: int, channels: int = 1, dtype: type = np.uint8) -> bytes:
    peak = np.iinfo(dtype).max
    ramp = np.linspace(0, peak, width, dtype=np.float64)[None, :].repeat(height, axis=0).astype(dtype)
    pixels = ramp if channels == 1 else np.dstack([ramp] * channels)
    return cv2.imencode(".png", pixels)[1].tobytes()


# --- what decoding takes ---------------------------------------------------------------


def test_the_budget_leaves_the_process_its_baseline_and_splits_the_rest() -> None:
    budget = MemoryBudget(2048 * MIB)
    assert budget.batch_pixels > Limits().max_pixels  # the largest legal image fits by default
    assert budget.batch_pixels * (16 + 8 + 5) <= budget.total_bytes - BASELINE_BYTES
    assert budget.batch_decode_bytes == budget.batch_pixels * 16


@pytest.mark.parametrize(
    "channels, dtype, per_pixel",
    [(1, np.uint8, 4), (3, np.uint8, 6), (4, np.uint8, 8), (3, np.uint16, 12), (4, np.uint16, 16)],
)
def test_decode_cost_follows_the_samples_the_decoder_keeps(channels: int, dtype: type, per_pixel: int) -> None:
    cost = decode_cost(png(30, 40, channels, dtype), Limits())
    assert cost == DecodeCost(1200, 1200 * per_pixel + DECODE_OVERHEAD_BYTES)


def test_decoding_a_16_bit_rgba_png_stays_within_its_cost(tmp_path: Path) -> None:
    """Peak memory measured in a fresh process that only reads and decodes the file: OpenCV's
    decoder array (twice, at its peak) and the 8-bit result, nothing full-size besides."""
    path = tmp_path / "rgba16.png"
    path.write_bytes(png(2000, 2000, 4, np.uint16))
    script = textwrap.dedent(f"""
        from pathlib import Path
        from shared.imaging.decoding import decode_cost, decode_image
        from shared.setting_types import Limits
        def kib(field):
            return int(Path("/proc/self/status").read_text().split(field + ":")[1].split()[0])
        data = Path({str(path)!r}).read_bytes()
        Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from here
        before = kib("VmRSS")
        image = decode_image(data, Limits())
        print((kib("VmHWM") - before) * 1024, decode_cost(data, Limits()).bytes)
    """)
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    grown, cost = map(int, result.stdout.split())
    assert cost == 4_000_000 * 16 + DECODE_OVERHEAD_BYTES
    assert cost / 2 < grown <= cost


def test_an_image_that_cannot_fit_is_refused_from_its_header() -> None:
    limits = Limits(worker_memory_bytes=SMALL_BUDGET.total_bytes)
    fits = png(2000, 2000)
    assert decode_image(fits, limits).shape == (2000, 2000, 3)
    too_large = png(2000, 2400)  # 4.8 million pixels
    with pytest.raises(ImageTooLarge) as refused:
        decode_image(too_large, limits)
    assert refused.value.code == "image_too_large"
    assert "memory budget of 512 MiB" in refused.value.message
    assert refused.value.details["worker_memory_bytes"] == 512 * MIB
    assert decode_image(too_large, Limits()).shape == (2000, 2400, 3)  # the default budget holds it


def test_refusals_name_what_does_not_fit() -> None:
    pixels, decode_bytes = SMALL_BUDGET.batch_pixels, SMALL_BUDGET.batch_decode_bytes
    assert SMALL_BUDGET.refusal(pixels, decode_bytes) is None
    assert "pixels" in SMALL_BUDGET.refusal(pixels + 1, 0)
    assert "decoding it takes" in SMALL_BUDGET.refusal(1000, decode_bytes + 1)  # samples wider than 16-bit RGBA
    assert MemoryBudget(BASELINE_BYTES).batch_pixels == 0  # nothing left beyond the process itself


# --- batches ---------------------------------------------------------------------------

costs = st.one_of(st.none(), st.builds(DecodeCost, st.integers(1, 6_000_000), st.integers(1, 100_000_000)))


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.lists(costs, max_size=40), st.integers(1, 16))
def test_batches_keep_order_and_never_exceed_the_budget(item_costs: list[DecodeCost | None], max_items: int) -> None:
    indices = list(range(100, 100 + len(item_costs)))
    batches = memory_batches(indices, item_costs, SMALL_BUDGET, max_items)
    assert [i for batch in batches for i in batch] == indices
    by_index = dict(zip(indices, item_costs))
    for batch in batches:
        assert 1 <= len(batch) <= max_items
        known = [by_index[i] for i in batch]
        if len(batch) > 1:
            assert None not in known
            assert sum(c.pixels for c in known) <= SMALL_BUDGET.batch_pixels
            assert sum(c.bytes for c in known) <= SMALL_BUDGET.batch_decode_bytes


def test_small_images_fill_a_batch_and_a_large_one_goes_alone() -> None:
    small, large = DecodeCost(250_000, 1_000_000), DecodeCost(4_500_000, 18_000_000)
    batches = memory_batches(list(range(7)), [small] * 3 + [large] + [small] * 3, SMALL_BUDGET, 8)
    assert batches == [[0, 1, 2], [3], [4, 5, 6]]
    assert memory_batches(list(range(5)), [small] * 5, SMALL_BUDGET, 2) == [[0, 1], [2, 3], [4]]
    assert memory_batches([7, 8], [None, small], SMALL_BUDGET, 8) == [[7], [8]]


# --- a chunk on real Redis and SeaweedFS -------------------------------------------------


@pytest.fixture
def chunk_context(app_settings: Settings, storage) -> WorkerContext:
    settings = with_own_keys(app_settings).with_overrides(
        limits=Limits(worker_memory_bytes=SMALL_BUDGET.total_bytes), batch_size=8, chunk_size=8
    )
    return WorkerContext(settings, Published())


@pytest.mark.integration
def test_a_chunk_refuses_only_the_image_that_cannot_fit_and_batches_the_rest_by_memory(
    chunk_context: WorkerContext, monkeypatch
) -> None:
    inputs = [png(1000, 1600), png(1000, 1600), png(2000, 2400), png(1000, 1600), png(40, 60)]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index, data in enumerate(inputs):
            archive.writestr(f"{index}.png", data, compress_type=zipfile.ZIP_STORED)
    job_id = expand(chunk_context, "zip", buffer.getvalue())
    seen: list[list[int]] = []
    colorize = ChunkRun._colorize
    monkeypatch.setattr(
        ChunkRun,
        "_colorize",
        lambda run, engine, items: (seen.append([item.index for item in items]), colorize(run, engine, items))[1],
    )

    ((_, args),) = chunk_context.app.tasks
    ChunkRun(chunk_context, job_id).run(args[1])

    # 1.6 M pixels each: two fit in 4.6 M; the 4.8 M-pixel one is refused from its header.
    assert seen == [[0, 1], [3, 4]]
    job = chunk_context.jobs.get(job_id)
    assert (job.status, job.done, job.failed) == (JobStatus.PARTIALLY_SUCCEEDED, 4, 1)
    (failed,) = [item for item in chunk_context.jobs.items(job_id, 0, 10) if item.error]
    assert (failed.index, failed.error["code"]) == (2, "image_too_large")


# --- the output format's share ------------------------------------------------------------


def test_png_and_webp_results_take_smaller_batches_than_jpeg() -> None:
    limits = Limits(worker_memory_bytes=2048 * MIB)
    jpeg, png_budget, webp = (MemoryBudget.of(limits, OutputOptions(fmt)) for fmt in OutputFormat)
    assert jpeg == MemoryBudget(2048 * MIB) == MemoryBudget.of(limits)
    assert jpeg.batch_pixels > png_budget.batch_pixels > webp.batch_pixels
    for fmt in OutputFormat:
        per_pixel = 16 + 8 + STORE_BYTES_PER_PIXEL[fmt]
        assert MemoryBudget.of(limits, OutputOptions(fmt)).batch_pixels * per_pixel <= 2048 * MIB - BASELINE_BYTES
        scaling = MemoryBudget.of(limits, OutputOptions(fmt, max_side=100))
        assert scaling.batch_pixels * (per_pixel + 3) <= 2048 * MIB - BASELINE_BYTES


@pytest.mark.integration
def test_a_webp_chunk_refuses_an_image_only_jpeg_could_store(chunk_context: WorkerContext) -> None:
    # 3.6 M pixels: within the JPEG shares of 512 MiB (4.6 M a batch), not within WebP's (3.1 M).
    webp_budget = MemoryBudget.of(chunk_context.settings.limits, OutputOptions(OutputFormat.WEBP))
    assert webp_budget.batch_pixels < 1800 * 2000 < SMALL_BUDGET.batch_pixels
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("small.png", png(100, 150))
        archive.writestr("large.png", png(1800, 2000))
    job_id = new_id()
    key = source_key(TENANT, job_id)
    chunk_context.storage.put_bytes(key, buffer.getvalue())
    chunk_context.jobs.create_job(
        tenant=TENANT,
        model=TEST_MODEL,
        temperature=None,
        source_kind="zip",
        source_key=key,
        job_id=job_id,
        output=OutputOptions(OutputFormat.WEBP, 80),
    )
    chunk_context.jobs.mark_running(job_id)
    lease = ExpansionLease(chunk_context.redis, chunk_context.jobs.keys.job(job_id).expander)
    assert lease.acquire()
    Expander(chunk_context, chunk_context.jobs.get(job_id), lease).run()
    lease.release()

    ((_, args),) = chunk_context.app.tasks
    ChunkRun(chunk_context, job_id).run(args[1])

    job = chunk_context.jobs.get(job_id)
    assert (job.status, job.done, job.failed) == (JobStatus.PARTIALLY_SUCCEEDED, 1, 1)
    small, large = chunk_context.jobs.items(job_id, 0, 10)
    assert small.output_path == "small.webp" and small.error is None
    assert large.error is not None and large.error["code"] == "image_too_large" and "webp" in large.error["message"]
    assert chunk_context.storage.exists(result_key(TENANT, job_id, 0, OutputFormat.WEBP))
