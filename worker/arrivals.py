"""A chunk's items read by reference, handed out in the order their bytes arrive.

A URL or a tenant's object arrives as fast as its source sends it: one slow source must not
hold the items already read, nor the process that colorizes them. So the chunk's reads are
started ahead, on the process's I/O threads (:meth:`worker.reference_reader.ReferenceReader.submit`),
and each :meth:`Arrivals.take` gives the items that have arrived, waiting only while none has:
those whose read failed, each with its own error, and of the others a batch within the memory
budget and the item limit (:func:`worker.batching.memory_batches`), in order of arrival; the
rest wait for the next take. The caller keeps the reads ahead to a window (the items added and
not yet taken), so the fetched bytes held stay those of one batch's reads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from functools import partial
from types import TracebackType
from typing import Self

from shared.imaging.memory_budget import MemoryBudget
from worker.batching import memory_batches
from worker.chunk_items import LoadedItem


class Arrivals:
    """Reads started ahead for a chunk, and their items as they arrive."""

    def __init__(
        self,
        read: Callable[[int], Future[bytes]],
        load: Callable[[int, Future[bytes]], LoadedItem],
        budget: MemoryBudget,
        max_items: int,
    ) -> None:
        self._read = read  # starts an item's read
        self._load = load  # an arrived item's bytes and decoding cost, or its error
        self._budget = budget
        self._max_items = max_items
        self._changed = threading.Condition()
        self._reading: dict[int, Future[bytes]] = {}  # under way or waiting for an I/O thread
        self._arrived: list[tuple[int, Future[bytes]]] = []  # in order of arrival
        self._ready: list[LoadedItem] = []  # loaded, left over by the last take

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def add(self, indices: Iterable[int]) -> None:
        """Start reading the items ``indices``."""
        for index in indices:
            future = self._read(index)
            with self._changed:
                self._reading[index] = future
            future.add_done_callback(partial(self._arrive, index))

    @property
    def unfinished(self) -> list[int]:
        """The items added and not yet taken, arrived first."""
        with self._changed:
            return [item.index for item in self._ready] + [index for index, _ in self._arrived] + list(self._reading)

    @property
    def ready(self) -> bool:
        """Whether :meth:`take` would return at once (something has arrived, or nothing is left
        to read)."""
        with self._changed:
            return self._ready_now()

    def take(self) -> list[LoadedItem]:
        """The next items: every arrived one whose read failed, and a batch of the others within
        the budget, in order of arrival. Waits while none has arrived and some are being read;
        empty once every item added has been taken."""
        with self._changed:
            self._changed.wait_for(self._ready_now)
            arrived, self._arrived = self._arrived, []
        self._ready += [self._load(index, future) for index, future in arrived]
        failed = [item for item in self._ready if item.error is not None]
        usable = [item for item in self._ready if item.error is None]
        batches = memory_batches(usable, [item.cost for item in usable], self._budget, self._max_items)
        self._ready = [item for batch in batches[1:] for item in batch]
        return failed + (batches[0] if batches else [])

    def close(self) -> None:
        """Drop what is left: reads still waiting for a thread are canceled, the others' bytes
        are dropped as they arrive."""
        with self._changed:
            reading = list(self._reading.values())
            self._reading.clear()
            self._arrived.clear()
            self._ready.clear()
        for future in reading:
            future.cancel()

    def _ready_now(self) -> bool:
        return bool(self._ready or self._arrived or not self._reading)

    def _arrive(self, index: int, future: Future[bytes]) -> None:
        with self._changed:
            if self._reading.pop(index, None) is None:
                return  # closed meanwhile
            self._arrived.append((index, future))
            self._changed.notify_all()
