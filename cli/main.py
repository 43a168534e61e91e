"""The colorize command: submit photos to a Colorize API, follow jobs, fetch results; run the service.

Client commands (submit, jobs, status, wait, download, cancel, delete, models list) import only the HTTP
client, so they start fast; serve, models install, eval and keys load the service's code.
Exit status: 0 done, 1 the job did not fully succeed or the API refused (message on stderr),
2 the command line or a setting was wrong.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TextIO

from cli import connections, jobs, keys, models, serve
from cli.context import API_KEY_VARIABLE, API_URL_VARIABLE, DEFAULT_API_URL, Context, UsageError
from cli.hint_options import hint_argument, hints_file

USAGE_ERROR = 2
# The API's job statuses (shared.jobs.records.JobStatus), named here so that client commands import no service code.
JOB_STATUSES = ("queued", "running", "succeeded", "partially_succeeded", "failed", "canceled")
INTERRUPTED = 130
Command = Callable[[Context], int]


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="colorize", description=__doc__.split("\n\n")[0])
    _add_globals(parser, env)
    # The same options after the command name (``colorize status JOB --json``); SUPPRESS keeps
    # a subcommand from overwriting what was given before it.
    after = argparse.ArgumentParser(add_help=False)
    _add_globals(after, None)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = _command(commands, "serve", serve.serve, "run the API, workers and embedded Redis/SeaweedFS here")
    p.add_argument("--workers", type=int, default=1, help="celery worker processes (default 1)")
    p.add_argument("--concurrency", type=int, default=None, help="pool processes per worker (default: one per core)")
    p.add_argument("--api-workers", type=int, default=2, help="API server processes (default 2)")

    p = _command(commands, "submit", jobs.submit, "submit images, archives or folders, or images by reference", after)
    p.add_argument(
        "paths", nargs="*", metavar="PATH", help="an image, an archive (zip/tar/tar.gz), a folder, or several"
    )
    p.add_argument("--from-connection", metavar="NAME", help="instead of PATHs: images in this stored connection")
    p.add_argument("--prefix", default="", metavar="P", help="with --from-connection: every object under this prefix")
    p.add_argument(
        "--key", action="append", dest="keys", metavar="KEY", help="with --from-connection: this object (repeatable)"
    )
    p.add_argument(
        "--url", action="append", dest="urls", metavar="URL", help="instead of PATHs: an image URL (repeatable)"
    )
    p.add_argument("--to-connection", metavar="NAME", help="also write results to this stored connection")
    p.add_argument("--to-prefix", default="", metavar="P", help="with --to-connection: under this prefix")
    p.add_argument(
        "--only-to-connection", action="store_true", help="with --to-connection: do not keep results in the service"
    )
    p.add_argument("--model", help="installed model to use (default: the service's)")
    p.add_argument("--temperature", type=float, help="decoding temperature: lower is more vivid (see 'models list')")
    p.add_argument("--callback-url", metavar="URL", help="send signed webhook deliveries about the job here")
    p.add_argument(
        "--events",
        type=_event_list,
        metavar="LIST",
        help="with --callback-url: which of started,progress,completed (default: all)",
    )
    p.add_argument("--format", choices=("jpeg", "png", "webp"), help="the results' image format (default jpeg)")
    p.add_argument("--quality", type=int, metavar="1-100", help="jpeg/webp quality (default: the service's, 90)")
    p.add_argument("--max-side", type=int, metavar="PIXELS", help="scale results down so no side is longer (never up)")
    p.add_argument(
        "--hint",
        action="append",
        dest="hints",
        type=hint_argument,
        metavar="X,Y,#RRGGBB",
        help="a single image's colour at X,Y (0..1 of the upright photo; ',RADIUS' optional); repeatable",
    )
    p.add_argument(
        "--hints",
        dest="hints_file",
        type=hints_file,
        metavar="FILE.json",
        help="colour hints from JSON: a list for a single image, or an object of lists by item path "
        "for an archive, a folder or images by reference",
    )
    p.add_argument("--wait", action="store_true", help="wait for the job, then download its results")
    p.add_argument("--out", help="with --wait: where results go (default ./colorized/JOB_ID/)")
    p.add_argument("--zip", action="store_true", help="with --wait: download one zip instead of separate images")
    _add_poll(p)

    p = _command(commands, "jobs", jobs.list_jobs, "list your jobs, newest first", after)
    p.add_argument("--status", choices=JOB_STATUSES, help="only jobs with this status")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="show at most N jobs (default 20)")

    p = _command(commands, "connections", connections.connections, "list, add or delete stored S3 connections", after)
    p.add_argument("action", choices=["list", "add", "delete"], nargs="?", default="list")
    p.add_argument("name", nargs="?", metavar="NAME", help="the connection (add, delete)")
    p.add_argument("--endpoint", metavar="URL", help="add: the store's base URL")
    p.add_argument("--bucket", help="add: the bucket")
    p.add_argument("--region", help="add: the region (default us-east-1)")
    p.add_argument(
        "--access-key-id",
        default=env.get("AWS_ACCESS_KEY_ID"),
        help="add: its access key id (default: $AWS_ACCESS_KEY_ID); the secret is read from $AWS_SECRET_ACCESS_KEY",
    )

    p = _command(commands, "status", jobs.status, "show a job", after)
    p.add_argument("job", metavar="JOB", help="job id")
    p.add_argument("--items", action="store_true", help="list every item with its outcome")

    p = _command(commands, "wait", jobs.wait, "wait until a job ends", after)
    p.add_argument("job", metavar="JOB", help="job id")
    _add_poll(p)

    p = _command(commands, "download", jobs.download, "download a job's results", after)
    p.add_argument("job", metavar="JOB", help="job id")
    p.add_argument("--out", help="destination folder (default ./colorized/JOB_ID/)")
    p.add_argument("--zip", action="store_true", help="one zip instead of separate images")

    p = _command(commands, "cancel", jobs.cancel, "cancel a job (finished results stay)", after)
    p.add_argument("job", metavar="JOB", help="job id")

    p = _command(
        commands,
        "delete",
        jobs.delete,
        "delete a job: stop it, delete what the service stored (never your buckets)",
        after,
    )
    p.add_argument("job", metavar="JOB", help="job id")

    group = commands.add_parser("models", help="list or install models")
    model_commands = group.add_subparsers(dest="models_command", metavar="COMMAND", required=True)
    _command(model_commands, "list", models.list_models, "models the API offers", after)
    p = _command(
        model_commands,
        "install",
        models.install,
        "install released weights here (options: colorize models install eccv16 --help)",
        passthrough=True,
    )
    p.add_argument("name", choices=["eccv16"], help="which model")
    _command(
        model_commands,
        "decoding",
        models.decoding,
        "set an installed model's prior correction and temperature (options: colorize models decoding --help)",
        passthrough=True,
    )

    _command(
        commands,
        "eval",
        models.evaluate,
        "colour quality of installed models on colour photos (options: colorize eval --help)",
        passthrough=True,
    )
    _command(
        commands, "keys", keys.keys, "create, list or revoke API keys (options: colorize keys --help)", passthrough=True
    )
    return parser


def main(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run one command line; returns the exit status (the environment is read here and nowhere else)."""
    env = os.environ if env is None else env
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    parser = build_parser(env)
    try:
        args, extra = parser.parse_known_args(argv)
        if extra and not args.passthrough:
            parser.error("unrecognized arguments: " + " ".join(extra))
    except SystemExit as exc:  # argparse's usage errors (2) and --help (0)
        return exc.code if isinstance(exc.code, int) else USAGE_ERROR
    ctx = Context(args=args, extra=extra, env=env, stdout=stdout, stderr=stderr)
    try:
        run: Command = args.run
        return run(ctx)
    except UsageError as exc:
        print(f"colorize: {exc}", file=stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        return INTERRUPTED
    except Exception as exc:
        from client import ClientError

        if isinstance(exc, ClientError):
            print(f"colorize: {exc.message} ({exc.code})", file=stderr)
            return 1
        raise
    finally:
        ctx.close()


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    run: Command,
    help_text: str,
    after: argparse.ArgumentParser | None = None,
    passthrough: bool = False,
) -> argparse.ArgumentParser:
    # A passed-through command parses its own options, --help included.
    parser = commands.add_parser(
        name,
        help=help_text,
        description=help_text,
        add_help=not passthrough,
        parents=[after] if after is not None else [],
    )
    parser.set_defaults(run=run, passthrough=passthrough)
    return parser


def _add_globals(parser: argparse.ArgumentParser, env: Mapping[str, str] | None) -> None:
    def default(value: object) -> object:
        return argparse.SUPPRESS if env is None else value

    url = (env or {}).get(API_URL_VARIABLE) or DEFAULT_API_URL
    parser.add_argument(
        "--api",
        metavar="URL",
        default=default(url),
        help=f"API base URL (default: ${API_URL_VARIABLE} or {DEFAULT_API_URL})",
    )
    parser.add_argument(
        "--api-key",
        metavar="KEY",
        default=default((env or {}).get(API_KEY_VARIABLE)),
        help=f"API key (default: ${API_KEY_VARIABLE})",
    )
    parser.add_argument("--json", action="store_true", default=default(False), help="machine-readable output")


def _event_list(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _add_poll(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--poll", type=float, default=1.0, metavar="SECONDS", help="status polling interval")


if __name__ == "__main__":
    sys.exit(main())
