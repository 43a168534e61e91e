"""``connections``: the tenant's stored S3 connections on a running API (sources and
destinations by reference: ``colorize submit --from-connection`` / ``--to-connection``)."""

from __future__ import annotations

from cli.context import Context, UsageError
from cli.output import print_json

SECRET_VARIABLE = "AWS_SECRET_ACCESS_KEY"


def connections(ctx: Context) -> int:
    args = ctx.args
    client = ctx.client()
    if args.action == "list":
        stored = client.connections()
        if ctx.json:
            print_json({"connections": [c.raw for c in stored]}, ctx.stdout)
        for connection in [] if ctx.json else stored:
            print(f"{connection.name}\t{connection.endpoint_url}\t{connection.bucket}", file=ctx.stdout)
        return 0
    if not args.name:
        raise UsageError(f"'connections {args.action}' needs a NAME")
    if args.action == "delete":
        client.delete_connection(args.name)
        ctx.note(f"connection {args.name} deleted")
        return 0
    secret = ctx.env.get(SECRET_VARIABLE)
    # The secret only from the environment: a command line is visible to every user of the machine.
    if not (args.endpoint and args.bucket and args.access_key_id and secret):
        raise UsageError(f"'connections add' needs --endpoint, --bucket, --access-key-id and ${SECRET_VARIABLE}")
    created = client.create_connection(args.name, args.endpoint, args.bucket, args.access_key_id, secret, args.region)
    if ctx.json:
        print_json(created.raw, ctx.stdout)
    else:
        print(created.name, file=ctx.stdout)
    return 0
