"""``serve``: the whole service on this machine (API, workers, embedded Redis and SeaweedFS)."""

from __future__ import annotations

from cli.context import Context


def serve(ctx: Context) -> int:
    from cli.local_stack import serve as run_stack  # boto3 and redis, only when serving

    args = ctx.args
    return run_stack(ctx.settings(), workers=args.workers, concurrency=args.concurrency, api_workers=args.api_workers)
