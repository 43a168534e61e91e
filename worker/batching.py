"""A chunk's items in batches by the memory they take, not by their count.

A batch is a run of consecutive items whose pixels and decoding memory, read from their
headers once their bytes are fetched (no extra read), stay within the shares of the worker's
memory budget (``shared.imaging.memory_budget``) and whose count stays within ``batch_size``: small
images fill a batch, a large one is processed with fewer others or alone, and the process
never holds more than its budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from shared.imaging.decoding import DecodeCost
from shared.imaging.memory_budget import MemoryBudget

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
