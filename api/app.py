"""The Flask app factory: ``gunicorn 'api.app:create_app()'``.

The API validates requests, stores uploads, records job state and enqueues tasks by name;
it never loads a model.
"""

from __future__ import annotations

from flask import Flask, request
from flask.json.provider import DefaultJSONProvider

from api import web
from api.bodies import json_too_large
from api.error_responses import register_error_handlers
from api.proxies import TrustedProxies
from api.request_metrics import install_metrics
from api.routes import (
    connection_routes,
    delivery_routes,
    health_routes,
    job_routes,
    likely_colour_routes,
    metrics_routes,
    model_routes,
    openapi_routes,
    result_routes,
    upload_routes,
)
from api.services import EXTENSION_KEY, Services
from api.tenancy import install_authentication
from shared.errors import PayloadTooLarge
from shared.logging import configure_logging
from shared.network.addresses import parse_networks
from shared.settings import Settings

# gunicorn's exit status for "App failed to load": its master stops instead of restarting
# workers that would fail the same way.
_APP_LOAD_ERROR = 4


def create_app(settings: Settings | None = None) -> Flask:
    # Without settings, a server is calling (gunicorn): a bad setting stops it with its message.
    settings = settings or Settings.from_env_or_exit(status=_APP_LOAD_ERROR)
    app = Flask("colorize", static_folder=web.STATIC_DIR)
    # Checked against Content-Length before the body is read, so oversized direct uploads
    # are refused (413) without being buffered.
    app.config["MAX_CONTENT_LENGTH"] = settings.limits.max_request_bytes
    json_provider = DefaultJSONProvider(app)
    json_provider.sort_keys = False  # fields in the order the models declare them
    app.json = json_provider
    # Wrapping wsgi_app is how Flask takes WSGI middleware; mypy sees a method assigned.
    app.wsgi_app = TrustedProxies(app.wsgi_app, parse_networks(settings.trusted_proxies))  # type: ignore[method-assign]
    configure_logging(settings)
    svc = Services.connect(settings)
    app.extensions[EXTENSION_KEY] = svc
    # First, so that requests refused by the checks below are measured too.
    install_metrics(app, settings)
    limit = settings.limits.max_request_bytes
    json_limit = min(settings.limits.max_json_bytes, limit)

    @app.before_request
    def _refuse_oversized_body() -> None:
        # Before authentication or any route reads a byte: a declared size over the limit is
        # refused at once (413), whatever the route would do with the body.
        if request.content_length is not None and request.content_length > limit:
            raise PayloadTooLarge(
                f"the request body exceeds {limit} bytes; use POST /v1/uploads for large files", limit=limit
            )
        if request.is_json:
            # A JSON body is parsed whole: its own, smaller bound, also on a body of no declared
            # size (chunked), whose reading stops there (api/bodies.py).
            request.max_content_length = json_limit
            if request.content_length is not None and request.content_length > json_limit:
                raise json_too_large(json_limit)

    install_authentication(app, settings)
    blueprints = (
        job_routes.bp,
        result_routes.bp,
        likely_colour_routes.bp,
        upload_routes.bp,
        connection_routes.bp,
        model_routes.bp,
        health_routes.bp,
        metrics_routes.bp,
        delivery_routes.bp,
        openapi_routes.bp,
    )
    for blueprint in (*blueprints, web.bp):
        app.register_blueprint(blueprint)
    register_error_handlers(app)
    return app
