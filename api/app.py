"""The Flask app factory: ``gunicorn 'api.app:create_app()'``.

The API validates requests, stores uploads, records job state and enqueues tasks by name;
it never loads a model.
"""

from __future__ import annotations

from flask import Flask, request

from api.errors import register_error_handlers
from api.routes import health, jobs, models, results, uploads
from api.services import EXTENSION_KEY, Services
from api.tenancy import install_authentication
from shared.errors import PayloadTooLarge
from shared.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask("colorize")
    # Checked against Content-Length before the body is read, so oversized direct uploads
    # are refused (413) without being buffered.
    app.config["MAX_CONTENT_LENGTH"] = settings.limits.max_request_bytes
    app.json.sort_keys = False
    app.extensions[EXTENSION_KEY] = Services.connect(settings)
    limit = settings.limits.max_request_bytes

    @app.before_request
    def _refuse_oversized_body() -> None:
        # Before authentication or any route reads a byte: a declared size over the limit is
        # refused at once (413), whatever the route would do with the body.
        if request.content_length is not None and request.content_length > limit:
            raise PayloadTooLarge(
                f"the request body exceeds {limit} bytes; use POST /v1/uploads for large files", limit=limit)

    install_authentication(app, settings)
    for blueprint in (jobs.bp, results.bp, uploads.bp, models.bp, health.bp):
        app.register_blueprint(blueprint)
    register_error_handlers(app)
    return app
