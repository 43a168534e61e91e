"""What the page needs to place hints on any result: the likely colours a hint model keeps
beside a single image's result, served at a point, and which hint model re-colorizes a result
of a model without hints. Real Redis, SeaweedFS and a worker."""

from __future__ import annotations

import pytest

from api.app import create_app
from tests.test_hint_jobs import BLUE, HINT_MODEL, PLAIN_MODEL, RED, hex_rgb, hue, hue_distance, submit_form

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def app(hint_settings):
    return create_app(hint_settings)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def worker(hint_api_server):
    return hint_api_server


def likely(client, job: dict, **point: object):
    return client.get(f"/v1/jobs/{job['id']}/items/0/likely-colours", query_string=point)


def test_the_colours_at_a_hinted_point_start_with_the_hints_hue(client, worker) -> None:
    hints = [{"x": 0.2, "y": 0.5, "color": RED, "radius": 0.1}, {"x": 0.8, "y": 0.5, "color": BLUE, "radius": 0.1}]
    job = submit_form(client, hints).json
    assert job["status"] == "succeeded", job
    for hint in hints:
        response = likely(client, job, x=hint["x"], y=hint["y"])
        assert response.status_code == 200, response.json
        colours = response.json["colors"]
        assert len(colours) == 5 and len({c["color"] for c in colours}) == 5
        shares = [c["share"] for c in colours]
        assert shares == sorted(shares, reverse=True)
        top = hex_rgb(colours[0]["color"])
        assert hue_distance(hue(top), hue(hex_rgb(hint["color"]))) < 40, (hint, colours)


def test_a_point_outside_the_photo_is_400_naming_it(client, worker) -> None:
    job = submit_form(client, None).json
    for point, field in (({"x": 1.5, "y": 0.5}, "x"), ({"x": 0.5}, "y"), ({"x": "left", "y": 0.5}, "x")):
        response = likely(client, job, **point)
        assert response.status_code == 400 and response.json["error"]["details"]["field"] == field, response.json


def test_a_model_without_hints_keeps_no_likely_colours(client, worker) -> None:
    job = submit_form(client, None, model=PLAIN_MODEL).json
    assert job["status"] == "succeeded", job
    response = likely(client, job, x=0.5, y=0.5)
    assert response.status_code == 404 and "hints" in response.json["error"]["message"]
    assert likely(client, {"id": "0" * 26}, x=0.5, y=0.5).status_code == 404


def test_a_model_without_hints_names_the_hint_model_built_on_it(client) -> None:
    models = {model["name"]: model for model in client.get("/v1/models").json["models"]}
    assert models[PLAIN_MODEL]["hint_model"] == HINT_MODEL
    assert "hint_model" not in models[HINT_MODEL]
