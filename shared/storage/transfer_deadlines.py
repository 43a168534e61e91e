"""Whole-transfer deadlines for reads from a source: a URL, or an object of a tenant's bucket.

A socket timeout bounds each wait on a socket, not a transfer: a source that sends a byte every
few seconds never trips it. So each read from a source runs under a :class:`TransferDeadline`
(``with TransferDeadline(...) as clock:``) and its connections are watched while it runs (the
connection classes call :func:`watch_socket` as they connect and before each response, in the
reading thread). One thread per process shuts a watched socket down once its read's deadline has
passed or, from ``RATE_GRACE_S`` on, the read's average rate has fallen below its minimum: the
blocked read returns or raises at once, and :meth:`TransferDeadline.check` raises
``SourceTooSlow``. Bodies are read in pieces (:func:`read_body`) so the rate counts as they come.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

from shared.errors import EntryTooLarge, SourceTooSlow

# The average rate is judged only after this long: connecting and the first bytes take a moment.
RATE_GRACE_S = 5.0
# How often the watching thread looks at the reads under way, so a deadline strikes this late at most.
TICK_S = 0.1
# Bodies are read this much at a time (each piece counted for the rate).
PIECE_BYTES = 16 * 1024

_current = threading.local()


class TransferDeadline:
    """One read's deadline and minimum rate (0: none), and the sockets it has used."""

    def __init__(self, what: str, deadline_s: float, min_bytes_per_s: int = 0) -> None:
        self.what = what
        self.deadline_s = deadline_s
        self.min_bytes_per_s = min_bytes_per_s
        self.started = time.monotonic()
        self.received = 0
        self.reason: str | None = None  # why the read was cut short, once it is
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def __enter__(self) -> Self:
        self.started = time.monotonic()
        _current.deadline = self
        _watcher().add(self)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        _watcher().discard(self)
        _current.deadline = None

    def count(self, received: int) -> None:
        self.received += received

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            cut = self.reason is not None
        if cut:
            _shut(sock)

    def overdue(self, now: float) -> str | None:
        """Why the read must stop now, if it must."""
        elapsed = now - self.started
        if elapsed > self.deadline_s:
            return f"did not arrive within {self.deadline_s:g} s"
        if self.min_bytes_per_s and elapsed > RATE_GRACE_S and self.received < self.min_bytes_per_s * elapsed:
            return f"arrived slower than {self.min_bytes_per_s} bytes/s"
        return None

    def cut(self, reason: str) -> None:
        with self._lock:
            self.reason = reason
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shut(sock)

    def check(self) -> None:
        """SourceTooSlow when the read was cut short (whatever its reading then raised)."""
        if self.reason is None:
            self.reason = self.overdue(time.monotonic())  # between two looks of the watching thread
        if self.reason is not None:
            raise SourceTooSlow(f"{self.what}: {self.reason}", limit_s=self.deadline_s)


def watch_socket(sock: socket.socket | None) -> None:
    """Watch ``sock`` under the deadline of the read this thread is making, if any."""
    deadline: TransferDeadline | None = getattr(_current, "deadline", None)
    if deadline is not None and sock is not None:
        deadline.watch(sock)


def read_body(read: Callable[[int], bytes], limit: int, clock: TransferDeadline) -> bytes:
    """A body read a piece at a time, each counted; EntryTooLarge past ``limit`` bytes, and
    SourceTooSlow when the clock cut it short (rather than what the cut socket raised)."""
    pieces: list[bytes] = []
    total = 0
    while True:
        try:
            piece = read(PIECE_BYTES)
        except Exception:
            clock.check()
            raise
        clock.check()
        if not piece:
            return b"".join(pieces)
        total += len(piece)
        if total > limit:
            raise EntryTooLarge(f"{clock.what}: larger than {limit} bytes", limit=limit)
        pieces.append(piece)
        clock.count(len(piece))


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


class _Watcher:
    """The thread that cuts reads short: one per process (threads do not survive a fork)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._reads: set[TransferDeadline] = set()
        self._changed = threading.Condition()
        threading.Thread(target=self._run, name="transfer-deadlines", daemon=True).start()

    def add(self, deadline: TransferDeadline) -> None:
        with self._changed:
            self._reads.add(deadline)
            self._changed.notify()

    def discard(self, deadline: TransferDeadline) -> None:
        with self._changed:
            self._reads.discard(deadline)

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._reads:
                    self._changed.wait()
                reads = list(self._reads)
            now = time.monotonic()
            for read in reads:
                reason = read.reason is None and read.overdue(now)
                if reason:
                    read.cut(reason)
            time.sleep(TICK_S)


_the_watcher: _Watcher | None = None
_watcher_lock = threading.Lock()


def _watcher() -> _Watcher:
    global _the_watcher
    with _watcher_lock:
        if _the_watcher is None or _the_watcher.pid != os.getpid():
            _the_watcher = _Watcher()
        return _the_watcher
