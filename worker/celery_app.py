"""The worker command's Celery app: ``celery -A worker.celery_app worker -Q colorize``.

The app is built from the environment on first use, by :func:`shared.queue.celery_config.make_celery`
(the one place Celery is configured), so that importing this module needs no broker settings.
"""

from __future__ import annotations

from shared.queue.celery_config import make_celery
from shared.queue.contract import ColorizeCelery
from shared.settings import Settings


def __getattr__(name: str) -> ColorizeCelery:
    # ``app`` for the celery command line, built from the environment on first use so that
    # importing make_celery (the API does) needs no broker settings. A bad setting ends the
    # command with its message (celery would print a traceback).
    if name == "app":
        app = globals()["app"] = make_celery(Settings.from_env_or_exit())
        return app
    raise AttributeError(name)
