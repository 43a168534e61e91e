"""Colour hints on the model side: the planes, the manifest flag, and the engine feeding them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from shared.colour.colorizer import colorize, colorize_batch
from shared.colour.engine import Engine
from shared.colour.hint_planes import hint_ab, hint_planes
from shared.colour.hints import Hint
from shared.colour.lab import bgr_to_lab
from shared.colour.likely_colour_grid import LikelyColourGrid
from shared.colour.likely_colours import likely_colour_grid
from shared.colour.model_manifests import hint_models, load_manifest
from shared.errors import HintsNotSupported
from tests.model_builder import build_test_model

BLUE = "#2040c0"


def test_hint_ab_is_the_colours_lab_a_b() -> None:
    a, b = hint_ab("#ff0000")
    expected = bgr_to_lab(np.array([[[0, 0, 255]]], np.uint8))[0, 0]
    assert (a, b) == pytest.approx((float(expected[1]), float(expected[2])), abs=1e-4)
    assert a > 60 and b > 40
    assert hint_ab("#808080") == pytest.approx((0.0, 0.0), abs=0.01)


def test_a_point_hint_marks_the_one_cell_it_falls_in() -> None:
    ab, mask = hint_planes([Hint(x=0.26, y=0.74, color=BLUE)], 8)
    assert ab.shape == (2, 8, 8) and mask.shape == (1, 8, 8)
    assert ab.dtype == np.float32 and mask.dtype == np.float32
    assert np.argwhere(mask[0]).tolist() == [[5, 2]]  # row from y, column from x
    assert ab[:, 5, 2] == pytest.approx(hint_ab(BLUE), abs=1e-4)
    assert np.count_nonzero(ab) == 2


def test_points_on_the_far_edges_stay_on_the_grid() -> None:
    _, mask = hint_planes([Hint(x=1.0, y=1.0, color=BLUE), Hint(x=0.0, y=0.0, color=BLUE)], 8)
    assert np.argwhere(mask[0]).tolist() == [[0, 0], [7, 7]]


def test_no_hints_give_zero_planes() -> None:
    ab, mask = hint_planes([], 16)
    assert not ab.any() and not mask.any()


def test_a_radius_is_a_disc_in_the_photo_so_an_ellipse_on_a_stretched_grid() -> None:
    hint = Hint(x=0.5, y=0.5, color=BLUE, radius=0.25)
    _, square = hint_planes([hint], 32)
    rows, columns = np.nonzero(square[0])
    assert np.ptp(rows) == np.ptp(columns) == pytest.approx(15, abs=1)  # 2r of 32 cells
    # A photo twice as wide as high: r is a quarter of the width but half the height.
    _, wide = hint_planes([hint], 32, aspect=2.0)
    rows, columns = np.nonzero(wide[0])
    assert np.ptp(columns) == pytest.approx(15, abs=1)
    assert np.ptp(rows) == 31


def test_a_spot_weighs_as_two_points_its_centre_whole_the_rest_shared() -> None:
    _, mask = hint_planes([Hint(x=0.5, y=0.5, color=BLUE, radius=0.2)], 32)
    assert mask[0, 16, 16] == 1.0
    rest = mask[0].copy()
    rest[16, 16] = 0.0
    assert np.count_nonzero(rest) > 100 and rest.sum() == pytest.approx(1.0, abs=0.02)


def test_a_tiny_radius_still_marks_its_cell() -> None:
    _, mask = hint_planes([Hint(x=0.5, y=0.5, color=BLUE, radius=0.001)], 8)
    assert np.argwhere(mask[0]).tolist() == [[4, 4]]


def test_a_later_hint_wins_where_spots_overlap() -> None:
    ab, _ = hint_planes([Hint(0.5, 0.5, "#ff0000", radius=0.2), Hint(0.5, 0.5, BLUE)], 8)
    assert ab[:, 4, 4] == pytest.approx(hint_ab(BLUE), abs=1e-4)
    assert ab[:, 3, 4] == pytest.approx(hint_ab("#ff0000"), abs=1e-4)


def test_manifests_say_whether_a_model_takes_hints(tmp_path: Path) -> None:
    build_test_model(tmp_path, name="plain")
    build_test_model(tmp_path, name="hinted", hints=True)
    plain, hinted = load_manifest(tmp_path, "plain"), load_manifest(tmp_path, "hinted")
    assert plain.hints is False and plain.summary()["hints"] is False
    assert hinted.hints is True and hinted.summary()["hints"] is True
    assert hinted.probabilities_output == "probabilities"


def test_a_model_without_hint_inputs_refuses_hints_and_names_itself(tmp_path: Path) -> None:
    engine = Engine.load(build_test_model(tmp_path, name="plain"), device="cpu", threads=1)
    photo = np.full((40, 60, 3), 150, np.uint8)
    with pytest.raises(HintsNotSupported) as refused:
        colorize_batch(engine, [photo], hints=[[Hint(0.5, 0.5, BLUE)]])
    assert refused.value.code == "hints_not_supported"
    assert "plain" in refused.value.message
    # Empty lists are no hints: the model colorizes as it always did.
    assert np.array_equal(colorize_batch(engine, [photo], hints=[[]]), colorize_batch(engine, [photo]))


def test_a_hint_model_receives_the_planes_and_takes_the_hinted_colour(tmp_path: Path) -> None:
    engine = Engine.load(build_test_model(tmp_path, name="hinted", hints=True), device="cpu", threads=1)
    photo = np.full((64, 64, 3), 170, np.uint8)  # bright grey: warm without hints
    spot = Hint(0.25, 0.25, BLUE, radius=0.15)
    automatic, hinted = colorize(engine, [photo, photo], batch_size=2, hints=[[], [spot]])
    auto_lab, hinted_lab = bgr_to_lab(automatic), bgr_to_lab(hinted)
    assert auto_lab[16, 16, 2] > 5  # warm: positive b
    assert hinted_lab[16, 16, 2] < -10  # blue where the hint is
    assert np.abs(hinted_lab[48:, 48:, 1:] - auto_lab[48:, 48:, 1:]).max() < 1  # untouched far away


def test_a_hint_model_without_hints_gets_zero_planes(tmp_path: Path) -> None:
    plain = Engine.load(build_test_model(tmp_path, name="plain"), device="cpu", threads=1)
    hinted = Engine.load(build_test_model(tmp_path, name="hinted", hints=True), device="cpu", threads=1)
    photo = np.full((30, 50, 3), 90, np.uint8)
    assert np.array_equal(colorize_batch(hinted, [photo]), colorize_batch(plain, [photo]))


def _lab_of(colour: str) -> np.ndarray:
    return bgr_to_lab(np.array([[[int(colour[i : i + 2], 16) for i in (5, 3, 1)]]], np.uint8))[0, 0]


def test_likely_colours_rank_the_bins_of_each_cell_at_its_lightness(tmp_path: Path) -> None:
    engine = Engine.load(build_test_model(tmp_path, name="hinted", hints=True), device="cpu", threads=1)
    photo = np.full((64, 96, 3), 170, np.uint8)
    photo[:, 48:] = 60  # a dark right half
    grid = likely_colour_grid(engine, photo)
    offered = grid.at(0.25, 0.5)
    colours = [c.color for c in offered]
    assert len(colours) == 5 and len(set(colours)) == 5
    assert all(len(c) == 7 and c.startswith("#") for c in colours)
    shares = [c.share for c in offered]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1.0 + 1e-3
    assert abs(_lab_of(colours[0])[0] - bgr_to_lab(photo[:1, :1])[0, 0, 0]) < 3  # the photo's own lightness
    dark = _lab_of(grid.at(0.9, 0.5)[0].color)[0]
    assert abs(dark - bgr_to_lab(photo[:1, -1:])[0, 0, 0]) < 3
    assert grid.at(1.0, 1.0) == grid.at(0.999, 0.999)  # the far edge belongs to the last cell
    assert LikelyColourGrid.from_json(grid.to_json()) == grid
    assert LikelyColourGrid.from_bytes(grid.to_bytes()) == grid and len(grid.to_bytes()) < len(grid.to_json())
    # With a blue hint there, blue comes first.
    hinted = likely_colour_grid(engine, photo, hints=[Hint(0.25, 0.5, BLUE)]).at(0.25, 0.5)
    assert _lab_of(hinted[0].color)[2] < -10


def test_likely_colours_need_a_model_that_outputs_probabilities(tmp_path: Path) -> None:
    engine = Engine.load(build_test_model(tmp_path, name="plain"), device="cpu", threads=1)
    with pytest.raises(HintsNotSupported):
        likely_colour_grid(engine, np.full((20, 20, 3), 100, np.uint8))


def test_a_likely_colours_document_of_another_format_is_refused() -> None:
    with pytest.raises(ValueError):
        LikelyColourGrid.from_json(b'{"format": "other", "rows": 1, "columns": 1, "colours": [], "shares": []}')
    with pytest.raises(ValueError):
        LikelyColourGrid.from_json(
            b'{"format": "colorize.likely-colours/1", "rows": 2, "columns": 2, "colours": [], "shares": []}'
        )


def test_a_hint_model_is_the_twin_of_the_base_it_was_built_on_by_the_same_file(tmp_path: Path) -> None:
    plain = build_test_model(tmp_path, name="plain")
    twin = build_test_model(tmp_path, name="twin", hints=True, base=plain)
    # Built on an earlier file of "plain", since replaced: not its twin any more.
    stale = build_test_model(tmp_path, name="stale", hints=True, base=dataclasses.replace(plain, sha256="0" * 64))
    assert hint_models([plain, twin, stale]) == {"plain": "twin"}
    assert hint_models([plain, stale]) == {}
