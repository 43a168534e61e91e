"""``submit``, ``jobs``, ``status``, ``wait``, ``download``, ``cancel`` and ``delete``: jobs on a
running API.

``submit`` takes files, or names images by reference (``--from-connection``, ``--url``) and a
destination (``--to-connection``), which the service reads and writes itself."""

from __future__ import annotations

import argparse
import itertools
import threading
from pathlib import Path
from typing import Any

from cli.context import Context, UsageError
from cli.hint_options import given_hints
from cli.output import (
    downloaded_line,
    failed_summary,
    item_lines,
    job_summary,
    job_table,
    print_json,
    unmatched_hints_line,
)
from client import Destination, Item, Job
from client.api import JOBS_PAGE

DEFAULT_OUT = Path("colorized")


def submit(ctx: Context) -> int:
    args = ctx.args
    paths = [Path(p) for p in args.paths]
    if (args.out or args.zip) and not args.wait:
        raise UsageError("--out and --zip go with --wait (or use 'colorize download JOB' later)")
    if args.to_connection is None and (args.to_prefix or args.only_to_connection):
        raise UsageError("--to-prefix and --only-to-connection go with --to-connection")
    if args.wait and args.only_to_connection:
        raise UsageError("--wait downloads from the service, where --only-to-connection keeps nothing")
    if args.from_connection is not None or args.urls is not None:
        return _submit_references(ctx, paths)
    if not paths:
        raise UsageError("give a PATH, or --from-connection NAME, or --url URL")
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise UsageError("no such file or folder: " + ", ".join(missing))
    if len(paths) > 1 or paths[0].is_dir():
        ctx.note("packing into a zip...")
    client = ctx.client()
    with ctx.progress.bar("upload", unit="B") as bar:
        try:
            job = client.submit(
                paths,
                on_upload=lambda sent, total: bar.update(sent, total),
                hints=given_hints(args),
                **_job_options(args),
            )
        except FileNotFoundError as exc:
            raise UsageError(str(exc)) from None
    return _report_or_finish(ctx, job)


def _report_or_finish(ctx: Context, job: Job) -> int:
    """Without --wait, say which job was made; with it, see the job through."""
    if not ctx.args.wait:
        if ctx.json:
            print_json(job.raw, ctx.stdout)
        else:
            print(job.id, file=ctx.stdout)
            ctx.note(f"job {job.status}: {job.url}")
        return 0
    return _finish(ctx, job)


def _finish(ctx: Context, job: Job) -> int:
    """Wait for the job, download its results, report how it ended."""
    args = ctx.args
    ctx.note(f"job {job.id}: {job.url}")
    job = _wait(ctx, job.id)
    out = Path(args.out) if args.out else DEFAULT_OUT / job.id
    files = _download(ctx, job, out, args.zip)
    failed = _failed_items(ctx, job)
    if ctx.json:
        print_json(
            {"job": job.raw, "files": [str(f) for f in files], "failed_items": [item.raw for item in failed]},
            ctx.stdout,
        )
    else:
        print(downloaded_line(job, files, out, args.zip), file=ctx.stdout)
        _report_outcome(ctx, job, failed)
    return _exit_status(job)


def _submit_references(ctx: Context, paths: list[Path]) -> int:
    """A job whose images the service reads where they are (a stored connection, URLs)."""
    args = ctx.args
    if paths or (args.from_connection is None) == (args.urls is None):
        raise UsageError("give PATHs, or --from-connection NAME, or --url URL: one of them")
    if args.from_connection is None and (args.prefix or args.keys):
        raise UsageError("--prefix and --key go with --from-connection")
    if args.prefix and args.keys:
        raise UsageError("--prefix and --key do not go together")
    hints = given_hints(args)
    if isinstance(hints, list):
        raise UsageError(
            "--hint and a --hints list are for a single image file; images by reference take a "
            "--hints file holding an object of hints by item path"
        )
    job = ctx.client().submit_references(
        connection=args.from_connection,
        prefix=args.prefix,
        keys=args.keys,
        urls=args.urls,
        hints=hints,
        **_job_options(args),
    )
    return _report_or_finish(ctx, job)


def _job_options(args: argparse.Namespace) -> dict[str, Any]:
    """What every way of submitting passes on from the command line besides the images."""
    return {
        "destination": _destination(args),
        "model": args.model,
        "temperature": args.temperature,
        "callback_url": args.callback_url,
        "events": args.events,
        "format": args.format,
        "quality": args.quality,
        "max_side": args.max_side,
    }


def _destination(args: argparse.Namespace) -> Destination | None:
    if args.to_connection is None:
        return None
    return Destination(args.to_connection, args.to_prefix, keep_in_service=not args.only_to_connection)


def status(ctx: Context) -> int:
    client = ctx.client()
    job = client.job(ctx.args.job)
    items = list(client.items(job.id)) if ctx.args.items else None
    if ctx.json:
        data = dict(job.raw)
        if items is not None:
            data["items"] = [item.raw for item in items]
        print_json(data, ctx.stdout)
        return 0
    print(job_summary(job), file=ctx.stdout)
    if items is not None:
        for line in item_lines(items):
            print(line, file=ctx.stdout)
    return 0


def wait(ctx: Context) -> int:
    job = _wait(ctx, ctx.args.job)
    failed = _failed_items(ctx, job)
    if ctx.json:
        print_json(job.raw, ctx.stdout)
    else:
        print(job_summary(job), file=ctx.stdout)
        _report_outcome(ctx, job, failed)
    return _exit_status(job)


def download(ctx: Context) -> int:
    job = ctx.client().job(ctx.args.job)
    if not job.is_terminal and ctx.args.zip:
        raise UsageError(
            f"job {job.id} is {job.status}: its zip is there once it has finished "
            "(without --zip, the results ready so far are downloaded)"
        )
    if not job.is_terminal:
        ctx.note(f"job {job.id} is {job.status}: downloading the {job.counts.done} result(s) ready so far")
    out = Path(ctx.args.out) if ctx.args.out else DEFAULT_OUT / job.id
    files = _download(ctx, job, out, ctx.args.zip)
    if ctx.json:
        print_json({"job": job.id, "files": [str(f) for f in files]}, ctx.stdout)
    else:
        print(downloaded_line(job, files, out, ctx.args.zip), file=ctx.stdout)
    return 0


def cancel(ctx: Context) -> int:
    job = ctx.client().cancel(ctx.args.job)
    if ctx.json:
        print_json(job.raw, ctx.stdout)
    else:
        print(f"job {job.id} {job.status}: {job.counts.done} result(s) kept", file=ctx.stdout)
    return 0


def list_jobs(ctx: Context) -> int:
    limit = ctx.args.limit
    if limit < 1:
        raise UsageError("--limit must be at least 1")
    found = ctx.client().iter_jobs(status=ctx.args.status, page_size=min(limit, JOBS_PAGE))
    jobs = list(itertools.islice(found, limit))
    if ctx.json:
        print_json([job.raw for job in jobs], ctx.stdout)
    elif not jobs:
        ctx.note("no jobs" + (f" {ctx.args.status}" if ctx.args.status else ""))
    else:
        for line in job_table(jobs):
            print(line, file=ctx.stdout)
    return 0


def delete(ctx: Context) -> int:
    ctx.client().delete(ctx.args.job)
    if ctx.json:
        print_json({"job": ctx.args.job, "deleted": True}, ctx.stdout)
    else:
        print(f"job {ctx.args.job} deleted", file=ctx.stdout)
    return 0


# --- shared steps ---------------------------------------------------------------------------


def _wait(ctx: Context, job_id: str) -> Job:
    with ctx.progress.bar("processing", unit="img") as bar:
        try:
            return ctx.client().wait(
                job_id,
                poll_s=ctx.args.poll,
                on_progress=lambda job: bar.update(job.counts.done + job.counts.failed, job.counts.total or None),
            )
        except KeyboardInterrupt:
            ctx.note(f"\nstopped waiting; job {job_id} goes on (colorize wait {job_id})")
            raise


def _download(ctx: Context, job: Job, out: Path, as_zip: bool) -> list[Path]:
    client = ctx.client()
    if as_zip:
        with ctx.progress.bar("download", unit="B") as bar:
            return client.download(job.id, out, as_zip=True, on_bytes=bar.update)
    lock = threading.Lock()
    count = 0

    def downloaded(item: Item, path: Path) -> None:
        nonlocal count
        with lock:  # results arrive from several download threads
            count += 1
            bar.update(count)

    with ctx.progress.bar("download", total=job.counts.done or None, unit="img") as bar:
        return client.download(job.id, out, on_item=downloaded)


def _failed_items(ctx: Context, job: Job) -> list[Item]:
    if not job.counts.failed:
        return []
    return [item for item in ctx.client().items(job.id) if item.error is not None]


def _report_outcome(ctx: Context, job: Job, failed: list[Item]) -> None:
    if job.error is not None:
        ctx.note(f"job {job.status}: {job.error.code}: {job.error.message}")
    elif job.status != "succeeded":
        ctx.note(f"job {job.status}")
    if job.unmatched_hint_count:
        ctx.note(unmatched_hints_line(job))
    summary = failed_summary(failed)
    if summary:
        ctx.note(summary)


def _exit_status(job: Job) -> int:
    return 0 if job.status == "succeeded" else 1
