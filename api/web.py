"""The web page at ``/``: drop photos or an archive, follow each job, compare and download results.

The page is plain HTML, CSS and JavaScript in ``api/static/`` (no build step, nothing fetched
from elsewhere); it talks to the same ``/v1`` API as any other client. ``/`` and ``/static/``
are public (``api/tenancy.py``): the page asks for an API key when the API answers 401.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from flask import Blueprint, Response, make_response, render_template

from api.services import services
from shared.settings import Settings

# The app's static folder (``Flask(static_folder=STATIC_DIR)``), served at /static/; index.html
# in it is the page's template.
STATIC_DIR = Path(__file__).resolve().parent / "static"

bp = Blueprint("web", __name__, template_folder=STATIC_DIR)

# Files up to this size go straight to POST /v1/jobs, with upload progress from one request;
# larger ones take the presigned route (POST /v1/uploads), which never passes through the API.
DIRECT_UPLOAD_MAX_BYTES = 32 * 1024**2
# Room for the multipart form around the file (boundaries, field headers, model, temperature),
# so that a file just under the API's request limit is not refused for its envelope.
FORM_OVERHEAD_BYTES = 64 * 1024
# Where presigned URLs point when no endpoint is configured (boto3's AWS endpoints).
AWS_S3_ORIGINS = "https://*.amazonaws.com"


@bp.get("/")
def index() -> Response:
    settings = services().settings
    response = make_response(render_template("index.html", direct_upload_max_bytes=direct_upload_max_bytes(settings)))
    response.headers["Content-Security-Policy"] = content_security_policy(settings)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def direct_upload_max_bytes(settings: Settings) -> int:
    """The largest file the page sends through the API itself rather than by presigned upload."""
    return max(0, min(DIRECT_UPLOAD_MAX_BYTES, settings.limits.max_request_bytes - FORM_OVERHEAD_BYTES))


def storage_origin(settings: Settings) -> str:
    """The origin of the presigned URLs the browser follows (result downloads, uploads)."""
    endpoint = settings.s3_public_endpoint_url or settings.s3_endpoint_url
    if not endpoint:
        return AWS_S3_ORIGINS
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(settings: Settings) -> str:
    # The page keeps an API key in localStorage: only its own script runs, and it talks only
    # to the API and to the object store that presigned URLs lead to. Results are shown from
    # blob: URLs of fetched bytes; the original upload from a blob: URL of the local file.
    storage = storage_origin(settings)
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' blob: data:",
            f"connect-src 'self' {storage}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
