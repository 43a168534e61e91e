"""What the commands print: human-readable text, or JSON with ``--json``."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from client import Item, Job, Model

# The failed-items summary lists this many items, then counts the rest.
FAILED_SHOWN = 20


def print_json(data: Any, stream: TextIO) -> None:
    json.dump(data, stream, indent=2, default=str)
    stream.write("\n")


def _output(job: Job) -> str:
    output = job.output
    quality = f"  quality {output.quality}" if output.quality is not None else ""
    side = f"  max side {output.max_side}" if output.max_side is not None else ""
    return output.format + quality + side


def job_summary(job: Job) -> str:
    counts = job.counts
    lines = [
        f"job      {job.id}",
        f"status   {job.status}  ({job.progress * 100:.0f} %)",
        f"items    {counts.total} total, {counts.done} done, {counts.failed} failed, {counts.pending} pending"
        + ("" if job.expanded else "  (still reading the archive)"),
        f"model    {job.model}" + (f"  temperature {job.temperature:g}" if job.temperature is not None else ""),
        f"source   {job.source_filename or '-'} ({job.source_kind or '-'})",
        f"output   {_output(job)}",
        f"created  {_time(job.created_at)}   started {_time(job.started_at)}   finished {_time(job.finished_at)}",
        f"expires  {_time(job.expires_at)}",
        f"url      {job.url}",
    ]
    if job.error is not None:
        lines.append(f"error    {job.error.code}: {job.error.message}")
    if job.unmatched_hint_count:
        lines.append(f"hints    {unmatched_hints_line(job)}")
    return "\n".join(lines)


def unmatched_hints_line(job: Job) -> str:
    """The hinted paths that no item has: a misspelt path should not pass unseen."""
    more = job.unmatched_hint_count - len(job.unmatched_hints)
    listed = ", ".join(job.unmatched_hints) + (f" and {more} more" if more > 0 else "")
    return f"{job.unmatched_hint_count} hinted path(s) match no item, their hints unused: {listed}"


def item_lines(items: Iterable[Item]) -> Iterable[str]:
    for item in items:
        outcome = f"-> {item.output_path}" if item.status == "done" else ""
        if item.error is not None:
            outcome = f"{item.error.code}: {item.error.message}"
        hinted = f" ({len(item.hints)} hint{'s' if len(item.hints) > 1 else ''})" if item.hints else ""
        yield f"{item.index:>6}  {item.status:<8}  {item.path}{hinted}  {outcome}".rstrip()


def failed_summary(items: Iterable[Item]) -> str:
    """Failed items with their error codes: the first few one per line, then counts per code."""
    failed = [(item.path, item.error) for item in items if item.error is not None]
    if not failed:
        return ""
    lines = [f"{len(failed)} item(s) failed:"]
    for path, error in failed[:FAILED_SHOWN]:
        lines.append(f"  {path}: {error.code}: {error.message}")
    if len(failed) > FAILED_SHOWN:
        lines.append(f"  ... and {len(failed) - FAILED_SHOWN} more")
        by_code = Counter(error.code for _, error in failed)
        lines.append("  by code: " + ", ".join(f"{code} {n}" for code, n in by_code.most_common()))
    return "\n".join(lines)


def job_table(jobs: list[Job]) -> Iterable[str]:
    """One line per job under a header, the columns as wide as their widest value."""
    rows = [("JOB", "STATUS", "CREATED", "DONE", "FAILED", "TOTAL", "SOURCE")]
    for job in jobs:
        counts = job.counts
        source = f"{job.source_filename or '-'} ({job.source_kind or '-'})"
        rows.append(
            (job.id, job.status, _time(job.created_at), str(counts.done), str(counts.failed), str(counts.total), source)
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        yield "  ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip()


def model_lines(models: list[Model]) -> Iterable[str]:
    for model in models:
        marker = "*" if model.default else " "
        temperature = f"T={model.temperature:g}" if model.temperature is not None else ""
        description = model.description or ""
        yield f"{marker} {model.name:<20} {temperature:<8} {description}".rstrip()


def downloaded_line(job: Job, files: list[Path], dest: Path, as_zip: bool) -> str:
    if as_zip:
        return f"results of job {job.id} written to {files[0]}"
    return f"{len(files)} result(s) of job {job.id} written to {dest}/"


def _time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"
