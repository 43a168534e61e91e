"""Stored S3 connections of the tenant (``shared/tenancy/stored_connections.py`` says how they are kept)."""

from __future__ import annotations

from flask import Blueprint, Response

from api.bodies import json_body, respond
from api.connection_schemas import ConnectionInfo, ConnectionList, ConnectionRequest
from api.services import services
from api.tenancy import current_tenant
from shared.tenancy.stored_connections import Connection
from shared.tenancy.stored_connections import ConnectionInfo as StoredConnectionInfo
from shared.timestamps import iso_time

bp = Blueprint("connections", __name__, url_prefix="/v1/connections")


@bp.post("")
def create_connection() -> Response:
    svc = services()
    body = json_body(ConnectionRequest)
    stored = svc.connections.create(
        current_tenant(),
        Connection(
            name=body.name,
            endpoint_url=body.endpoint_url,
            region=body.region,
            bucket=body.bucket,
            created_at=0.0,
            access_key_id=body.access_key_id,
            secret_access_key=body.secret_access_key,
        ),
    )
    headers = {"Location": svc.url(f"/v1/connections/{stored.name}")}
    return respond(_info(stored), 201, headers)


@bp.get("")
def list_connections() -> Response:
    svc = services()
    return respond(ConnectionList(connections=[_info(info) for info in svc.connections.list(current_tenant())]))


@bp.delete("/<name>")
def delete_connection(name: str) -> Response:
    services().connections.delete(current_tenant(), name)
    return Response(status=204)


def _info(info: StoredConnectionInfo) -> ConnectionInfo:
    return ConnectionInfo(
        name=info.name,
        endpoint_url=info.endpoint_url,
        region=info.region,
        bucket=info.bucket,
        created_at=iso_time(info.created_at) or "",  # always set for a stored connection
    )
