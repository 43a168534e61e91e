"""Liveness (the process answers) and readiness (Redis, storage and workers are there)."""

from __future__ import annotations

from flask import Blueprint, Response

from api.bodies import respond
from api.error_responses import error_response
from api.schemas import Health, Ready, ReadyChecks
from api.services import services
from shared.errors import ServiceUnavailable
from shared.jobs.upkeep import WORKER_STALE_AFTER_S

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return respond(Health(status="ok"))


@bp.get("/readyz")
def readyz() -> Response:
    svc = services()
    checks: dict[str, str | int] = {}
    try:
        svc.redis.ping()
        checks["redis"] = "ok"
        workers = len(svc.heartbeats.live(WORKER_STALE_AFTER_S))
        checks["workers"] = workers
    except Exception as exc:  # noqa: BLE001  # any failure means "not ready", with the reason shown
        checks["redis"] = f"unavailable: {type(exc).__name__}"
        workers = 0
    try:
        svc.storage.ping()
        checks["storage"] = "ok"
    except Exception as exc:  # noqa: BLE001  # as for Redis: not ready, whatever the failure
        checks["storage"] = f"unavailable: {type(exc).__name__}"
    ready = checks.get("redis") == "ok" and checks.get("storage") == "ok" and workers > 0
    if not ready:
        return error_response(503, ServiceUnavailable.code, "the service is not ready", {"checks": checks})
    return respond(Ready(status="ready", checks=ReadyChecks(redis="ok", workers=workers, storage="ok")))
