"""Progress display on stderr: tqdm bars on a terminal, a few plain lines otherwise (logs, pipes)."""

from __future__ import annotations

from typing import Self, TextIO

from tqdm import tqdm

# Plain-line mode prints at most once per this many percent (or per new total).
LINE_STEP_PERCENT = 10


class Bar:
    """One progress bar: ``update(n, total)`` sets the absolute position (and a total that may grow)."""

    def update(self, n: int, total: int | None = None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class TqdmBar(Bar):
    def __init__(self, label: str, total: int | None, unit: str, stream: TextIO) -> None:
        scale = unit == "B"
        self._bar = tqdm(
            total=total,
            desc=label,
            unit=unit,
            unit_scale=scale,
            unit_divisor=1024 if scale else 1000,
            file=stream,
            leave=True,
            dynamic_ncols=True,
        )

    def update(self, n: int, total: int | None = None) -> None:
        if total is not None and total != self._bar.total:
            self._bar.total = total
        self._bar.n = n
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


class LineBar(Bar):
    """``label: 40% (4/10 img)`` lines at each step, and one line when done."""

    def __init__(self, label: str, total: int | None, unit: str, stream: TextIO) -> None:
        self._label, self._total, self._unit, self._stream = label, total, unit, stream
        self._n = 0
        self._shown: tuple[int, int | None] | None = None
        self._printed_n: int | None = None

    def update(self, n: int, total: int | None = None) -> None:
        self._n = n
        if total is not None:
            self._total = total
        step = (n * 100 // self._total // LINE_STEP_PERCENT) if self._total else -1
        if (step, self._total) != self._shown:
            self._shown = (step, self._total)
            self._print()

    def close(self) -> None:
        if self._printed_n != self._n:
            self._print()

    def _print(self) -> None:
        self._printed_n = self._n
        if self._total and self._unit == "B":
            text = f"{self._n * 100 // self._total}% ({_amount(self._n, 'B')}/{_amount(self._total, 'B')})"
        elif self._total:
            text = f"{self._n * 100 // self._total}% ({self._n}/{self._total} {self._unit})".replace(" )", ")")
        else:
            text = _amount(self._n, self._unit)
        print(f"{self._label}: {text}", file=self._stream, flush=True)


class Progress:
    """Makes bars of the kind the stream calls for; ``enabled=False`` makes silent ones."""

    def __init__(self, stream: TextIO, enabled: bool = True) -> None:
        self._stream = stream
        self._enabled = enabled
        self._tty = bool(getattr(stream, "isatty", lambda: False)())

    def bar(self, label: str, total: int | None = None, unit: str = "") -> Bar:
        if not self._enabled:
            return _Silent()
        return (TqdmBar if self._tty else LineBar)(label, total, unit, self._stream)


class _Silent(Bar):
    def update(self, n: int, total: int | None = None) -> None:
        pass

    def close(self) -> None:
        pass


def _amount(n: int, unit: str) -> str:
    if unit == "B":
        size: float = n
        for suffix in ("B", "KiB", "MiB", "GiB"):
            if size < 1024 or suffix == "GiB":
                return f"{size:.0f} {suffix}" if suffix == "B" else f"{size:.1f} {suffix}"
            size /= 1024
    return f"{n} {unit}".rstrip()
