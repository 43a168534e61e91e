"""``GET /metrics`` in the Prometheus text format (the measurements: ``api/request_metrics.py``)."""

from __future__ import annotations

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.request_metrics import metrics_registry

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    return Response(generate_latest(metrics_registry()), content_type=CONTENT_TYPE_LATEST)
