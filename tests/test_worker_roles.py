"""A worker that only delivers webhooks loads none of the colorize pipeline."""

from __future__ import annotations

import subprocess
import sys

from shared.queue.celery_config import colorizes, make_celery
from shared.queue.contract import COLORIZE_TASK, EXPAND_TASK, QUEUE, WEBHOOK_QUEUE, WEBHOOK_TASK
from shared.settings import PROJECT_ROOT, Settings

PIPELINE = [
    "onnxruntime",
    "torch",
    "shared.colour.engine",
    "worker.engine_cache",
    "shared.colour.colorizer",
    "worker.chunk_pipeline",
]


def test_the_modules_every_worker_imports_leave_the_engine_out() -> None:
    # What `celery -A worker.celery_app worker -Q webhooks` imports before it consumes anything.
    script = (
        "import sys\n"
        "from shared.settings import Settings\n"
        "from worker.celery_app import make_celery\n"
        "app = make_celery(Settings(redis_url='redis://127.0.0.1:1/0'))\n"
        "app.loader.import_default_modules()\n"
        f"print(sorted(app.tasks.keys() & {{{WEBHOOK_TASK!r}, {COLORIZE_TASK!r}, {EXPAND_TASK!r}}}))\n"
        f"print([m for m in {PIPELINE!r} if m in sys.modules])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    tasks, loaded = result.stdout.splitlines()
    assert tasks == str(sorted([COLORIZE_TASK, WEBHOOK_TASK, EXPAND_TASK]))  # every task is known...
    assert loaded == "[]"  # ...but the engine and its libraries load only with the first chunk


def test_only_workers_of_the_colorize_queue_load_models() -> None:
    app = make_celery(Settings(redis_url="redis://127.0.0.1:1/0"))
    assert colorizes(app)  # no -Q: every queue
    app.amqp.queues.select([WEBHOOK_QUEUE])
    assert not colorizes(app)
    app.amqp.queues.select([QUEUE, WEBHOOK_QUEUE])
    assert colorizes(app)
