"""A chunk's items in batches by the memory they take, not by their count.

A batch is a run of consecutive items whose pixels and decoding memory, read from their
headers once their bytes are fetched (no extra read), stay within the shares of the worker's
memory budget (``shared.imaging.memory_budget``) and whose count stays within ``batch_size``: small
images fill a batch, a large one is processed with fewer others or alone, and the process
never holds more than its budget; an image the budget cannot hold even alone is refused
(:func:`sized_item`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from shared.errors import ImageTooLarge
from shared.imaging.decoding import DecodeCost, decode_cost
from shared.imaging.memory_budget import MemoryBudget
from shared.imaging.output_options import OutputOptions
from shared.setting_types import Limits
from worker.chunk_items import LoadedItem

Item = TypeVar("Item")


def memory_batches(
    items: Sequence[Item], costs: Sequence[DecodeCost | None], budget: MemoryBudget, max_items: int
) -> list[list[Item]]:
    """``items`` in order, cut into batches within ``budget`` and ``max_items``. An item whose
    cost is unknown (its header could not be read) or beyond the budget (it will be refused)
    makes a batch of its own."""
    whole = DecodeCost(budget.batch_pixels, budget.batch_decode_bytes)
    batches: list[list[Item]] = []
    pixels = decode_bytes = 0
    for item, cost in zip(items, costs, strict=True):
        if cost is None or cost.pixels > whole.pixels or cost.bytes > whole.bytes:
            cost = whole
        fits = (
            pixels + cost.pixels <= whole.pixels
            and decode_bytes + cost.bytes <= whole.bytes
            and batches
            and len(batches[-1]) < max_items
        )
        if not fits:
            batches.append([])
            pixels = decode_bytes = 0
        batches[-1].append(item)
        pixels += cost.pixels
        decode_bytes += cost.bytes
    return batches


def sized_item(index: int, data: bytes, limits: Limits, output: OutputOptions) -> LoadedItem:
    """The item's bytes with what decoding them takes, read from their header; ImageTooLarge
    when the worker's memory budget for ``output`` cannot hold it."""
    cost = decode_cost(data, limits)  # checked against the JPEG shares
    refusal = MemoryBudget.of(limits, output).refusal(cost.pixels, cost.bytes)
    if refusal is not None:
        scaled = " scaled to max_side" if output.max_side is not None else ""
        raise ImageTooLarge(
            f"the image cannot be colorized and stored as {output.format}{scaled} within a worker's memory "
            f"budget of {limits.worker_memory_bytes // 1024**2} MiB ({refusal}); jpeg at full size takes least",
            output_format=output.format.value,
        )
    return LoadedItem(index, data=data, cost=cost)
