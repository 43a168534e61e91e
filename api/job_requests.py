"""A JSON job request read into its terms: an upload (``upload_id``) or a source by reference
(``source``), exactly one of them, as the OpenAPI description's ``oneOf`` says; and a source's
own two forms (a connection's objects, or URLs), again exactly one.

Request models allow fields they do not know, so a body may fit both forms; such a body is
refused, and one that fits neither gets the error of the form it comes closer to.
"""

from __future__ import annotations

from typing import Any

from api.bodies import parse, read_json
from api.schemas import (
    BucketSourceRequest,
    DestinationRequest,
    JobFromSource,
    JobFromUpload,
    RequestBody,
    UrlSourceRequest,
)
from shared.errors import InvalidRequest
from shared.storage.destinations import Destination, check_destination
from shared.storage.sources import BucketSource, SourceReference, UrlSource


def json_job_body() -> JobFromUpload | JobFromSource:
    body = read_json()
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    upload = _fits(JobFromUpload, body)
    from_source = _fits(JobFromSource, body) and _source_fits(body["source"])
    if upload and from_source:
        raise InvalidRequest("a job takes an 'upload_id' or a 'source', not both", field="source")
    if upload:
        return parse(JobFromUpload, body, strict=True)
    if "source" in body and "upload_id" not in body:
        source_request(body["source"])  # names what is wrong inside the source
        return parse(JobFromSource, body, strict=True)
    return parse(JobFromUpload, body, strict=True)


def source_request(raw: Any) -> BucketSourceRequest | UrlSourceRequest:
    """The source as its one form that fits; InvalidRequest naming ``source.<field>`` otherwise."""
    if not isinstance(raw, dict):
        raise InvalidRequest("'source' must be an object", field="source")
    bucket, urls = _fits(BucketSourceRequest, raw), _fits(UrlSourceRequest, raw)
    if bucket and urls:
        raise InvalidRequest("'source' takes a 'connection' or 'urls', not both", field="source")
    model: type[BucketSourceRequest | UrlSourceRequest]
    model = UrlSourceRequest if urls or (not bucket and "urls" in raw) else BucketSourceRequest
    try:
        return parse(model, raw, strict=True)
    except InvalidRequest as exc:
        field = f"source.{exc.details.get('field', '')}".rstrip(".")
        raise InvalidRequest(exc.message.replace(f"'{exc.details.get('field')}'", f"'{field}'"), field=field) from None


def source_reference(body: JobFromSource) -> SourceReference:
    source = body.source
    if isinstance(source, UrlSourceRequest):
        return UrlSource(tuple(source.urls))
    keys = tuple(source.keys) if source.keys is not None else None
    return BucketSource(source.connection, source.prefix, keys)


def destination(body: DestinationRequest | None) -> Destination | None:
    if body is None:
        return None
    return check_destination(Destination(body.connection, body.prefix, body.keep_in_service))


def _fits(model: type[RequestBody], data: dict[str, Any]) -> bool:
    try:
        parse(model, data, strict=True)
    except InvalidRequest:
        return False
    return True


def _source_fits(raw: Any) -> bool:
    try:
        source_request(raw)
    except InvalidRequest:
        return False
    return True
