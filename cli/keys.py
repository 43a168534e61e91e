"""``keys create|list|revoke``: API keys in the service's key store (run where its Redis is reachable)."""

from __future__ import annotations

from cli.context import Context
from cli.models import delegate


def keys(ctx: Context) -> int:
    from shared.tenancy.api_keys import main as keys_main  # redis, only for key administration

    return delegate(keys_main, ctx.extra, ctx)
