"""Peak memory and CPU time of the processes a benchmark started, read from ``/proc`` (Linux)."""

from __future__ import annotations

import os
from pathlib import Path


def process_tree(pid: int) -> list[int]:
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return pids
    for child in children:
        pids += process_tree(int(child))
    return pids


def peak_rss_mb(pid: int) -> float:
    """Largest peak RSS (VmHWM) among a process and its descendants."""
    peaks = []
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
        except OSError:
            continue
    return max(peaks, default=0.0)


def cpu_seconds_by_program() -> dict[str, float]:
    """CPU time (user + system) so far of each program this benchmark started (celery, weed,
    redis-server, gunicorn, ...), over all their processes."""
    tick = os.sysconf("SC_CLK_TCK")
    totals: dict[str, float] = {}
    for pid in process_tree(os.getpid())[1:]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        program = next(
            (
                Path(part.decode()).name
                for part in command[:4]
                if Path(part.decode()).name in ("celery", "weed", "redis-server", "gunicorn")
            ),
            "other",
        )
        totals[program] = totals.get(program, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return totals
