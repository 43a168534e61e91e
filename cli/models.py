"""``models list`` (from the API), ``models install``, ``models decoding`` and ``eval`` (on this machine)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cli.context import Context
from cli.output import model_lines, print_json


def list_models(ctx: Context) -> int:
    models = ctx.client().models()
    if ctx.json:
        print_json([model.raw for model in models], ctx.stdout)
    else:
        for line in model_lines(models):
            print(line, file=ctx.stdout)
    return 0


def install(ctx: Context) -> int:
    from models.install import main as install_main  # numpy and the importer, only when installing

    return delegate(install_main, ctx.extra, ctx)


def decoding(ctx: Context) -> int:
    from models.prior_correction import main as decoding_main  # ONNX and NumPy, only when re-heading

    return delegate(decoding_main, ctx.extra, ctx)


def evaluate(ctx: Context) -> int:
    from models.evaluation import main as evaluation_main  # the engine, OpenCV and NumPy

    return delegate(evaluation_main, ctx.extra, ctx)


def delegate(command: Callable[..., int], argv: Sequence[str], ctx: Context) -> int:
    """Run a ``main(argv, settings)`` command; its own argument errors and ``--help`` end it, not us."""
    try:
        return int(command(list(argv), ctx.settings()) or 0)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
