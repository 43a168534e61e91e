"""``keys create|list|revoke``: API keys in the service's key store (run where its Redis is reachable)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cli.context import Context
from cli.models import delegate

if TYPE_CHECKING:  # only for annotations: the key store loads redis, which only key administration needs
    from shared.settings import Settings
    from shared.tenancy.api_keys import ApiKey


def keys(ctx: Context) -> int:
    return delegate(main, ctx.extra, ctx)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="colorize keys", description="Create, list and revoke API keys.")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key for a tenant and print it (shown only once)")
    create.add_argument("--tenant", required=True, help="the tenant the key acts for (letters, digits, '-', '_')")
    create.add_argument("--name", default=None, help="what the key is for, shown by 'list'")
    listing = commands.add_parser("list", help="list keys (never the keys themselves)")
    listing.add_argument("--tenant", default=None, help="only this tenant's keys")
    revoke = commands.add_parser("revoke", help="revoke a key: requests with it get 401 from now on")
    revoke.add_argument("key_id", help="the key id, as 'list' shows it")
    return parser


def main(argv: Sequence[str] | None, settings: Settings) -> int:
    """``colorize keys ...`` against the service's Redis (settings.redis_url); returns the exit status."""
    args = _parser().parse_args(argv)
    if not settings.redis_url:
        print("colorize keys: set REDIS_URL to the Redis the API uses", file=sys.stderr)
        return 2
    import redis

    from shared.errors import ColorizeError
    from shared.tenancy.api_keys import KeyStore

    client = redis.Redis.from_url(settings.redis_url, socket_timeout=10, socket_connect_timeout=5)
    store = KeyStore(client, namespace=settings.redis_namespace)
    try:
        if args.command == "create":
            created = store.create(args.tenant, args.name)
            print(
                f"created key {created.key.id} for tenant {created.key.tenant}; "
                "it is shown only this once, store it now:",
                file=sys.stderr,
            )
            print(created.token)
        elif args.command == "list":
            _print_keys(store.list(args.tenant))
        else:
            key = store.revoke(args.key_id)
            print(f"revoked key {key.id} of tenant {key.tenant}")
    except ColorizeError as exc:
        print(f"colorize keys: {exc.message}", file=sys.stderr)
        return 1
    except redis.RedisError as exc:
        print(f"colorize keys: Redis at {settings.redis_url} failed: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    return 0


def _print_keys(listed: list[ApiKey]) -> None:
    from shared.timestamps import iso_time

    rows = [("KEY ID", "TENANT", "NAME", "CREATED", "STATE")]
    for key in listed:
        state = f"revoked {iso_time(key.revoked_at)}" if key.revoked else "active"
        rows.append((key.id, key.tenant, key.name or "-", iso_time(key.created_at) or "", state))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
