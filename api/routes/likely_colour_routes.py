"""The colours a hint model found most likely at a point of a colorized photo: what the page
offers when a person places a hint (``worker.likely_colour_grids`` keeps them)."""

from __future__ import annotations

from flask import Blueprint, Response

from api.bodies import query, respond
from api.likely_colour_schemas import LikelyColour, LikelyColours, LikelyColoursQuery
from api.services import services
from api.tenancy import current_tenant
from shared.colour.likely_colour_grid import LikelyColourGrid
from shared.errors import NotFound
from shared.storage.object_keys import likely_colours_key

bp = Blueprint("likely_colours", __name__, url_prefix="/v1/jobs")


@bp.get("/<job_id>/items/<int:index>/likely-colours")
def likely_colours(job_id: str, index: int) -> Response:
    point = query(LikelyColoursQuery)
    svc = services()
    job = svc.jobs.get(job_id, current_tenant())
    item = svc.jobs.item(job_id, index)
    if item.status != "done":
        raise NotFound(f"item {index} of job {job_id} has no result ({item.status})", status=item.status)
    try:
        grid = LikelyColourGrid.from_bytes(svc.storage.get_bytes(likely_colours_key(job.tenant, job_id, index)))
    except NotFound:
        raise NotFound(
            f"job {job_id} kept no likely colours: a single image colorized by a model that takes hints "
            "(GET /v1/models: hints true) keeps them",
            model=job.model,
        ) from None
    colours = [LikelyColour(color=c.color, share=c.share) for c in grid.at(point.x, point.y)]
    return respond(LikelyColours(x=point.x, y=point.y, colors=colours))
