"""The model side: bins, decoding head, engine and colorizer (no network, no official weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from models.onnx_head import annealed_mean, append_annealed_mean_head
from shared.colour.bins import NUM_BINS, ab_bins, grid_index
from shared.colour.colorizer import colorize
from shared.colour.engine import Engine
from shared.colour.lab import bgr_to_lab, lightness
from shared.colour.model_manifests import installed_models, load_manifest, write_manifest
from shared.errors import InvalidRequest, ModelFileError, ModelNotFound
from tests.model_builder import build_test_model

REFERENCE_BINS = Path(__file__).resolve().parents[2] / "shared" / "reference" / "pts_in_hull.npy"


def test_bins_are_313_grid_points_in_a_then_b_order() -> None:
    bins = ab_bins()
    assert bins.shape == (NUM_BINS, 2)
    assert np.all(bins % 10 == 0)
    order = np.lexsort((bins[:, 1], bins[:, 0]))
    assert np.array_equal(order, np.arange(NUM_BINS))


@pytest.mark.skipif(not REFERENCE_BINS.exists(), reason="../shared/reference (release files) not present")
def test_bins_equal_the_released_pts_in_hull() -> None:
    assert np.array_equal(ab_bins(), np.load(REFERENCE_BINS).astype(np.float32))


def test_grid_index_separates_neighbouring_cells() -> None:
    cells = grid_index(np.array([[0.0, 0.0], [4.9, 0.0], [5.1, 0.0], [0.0, 10.0], [-110.0, -110.0]]))
    assert cells[0] == cells[1] != cells[2]
    assert cells[3] == cells[0] + 1
    assert cells[4] == 0


def _logits_model(tmp_path: Path, logits: np.ndarray) -> Engine:
    """A graph that ignores L and returns fixed logits, with the decoding head appended."""
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["l"], ["m"], axes=[1, 2, 3], keepdims=1),
            helper.make_node("Mul", ["m", "zero"], ["z"]),
            helper.make_node("Add", ["fixed", "z"], ["logits"]),
        ],
        "fixed",
        [helper.make_tensor_value_info("l", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", NUM_BINS, 2, 2])],
        [
            numpy_helper.from_array(logits.astype(np.float32), "fixed"),
            numpy_helper.from_array(np.zeros((1, 1, 1, 1), np.float32), "zero"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    directory = tmp_path / "fixed"
    directory.mkdir()
    onnx.save(append_annealed_mean_head(model, "logits", ab_bins()), directory / "model.onnx")
    manifest = write_manifest(
        directory,
        {
            "name": "fixed",
            "format": "onnx",
            "file": "model.onnx",
            "input": {"name": "l", "size": 8, "normalisation": {"subtract": 50.0, "divide": 1.0}},
            "output": {"name": "ab", "downsample": 4},
            "temperature": 0.38,
        },
    )
    return Engine.load(manifest, device="cpu", threads=1)


def test_head_matches_numpy_annealed_mean_at_any_temperature(tmp_path: Path) -> None:
    logits = np.random.default_rng(1).normal(0, 3, (1, NUM_BINS, 2, 2)).astype(np.float32)
    engine = _logits_model(tmp_path, logits)
    l_input = np.full((1, 8, 8), 50.0, np.float32)
    for temperature in (0.05, 0.38, 1.0):
        expected = annealed_mean(logits[0], ab_bins(), temperature).transpose(1, 2, 0)
        np.testing.assert_allclose(engine.predict_ab(l_input, temperature)[0], expected, atol=1e-3)


def test_temperature_moves_from_mean_to_mode(tmp_path: Path) -> None:
    bins = ab_bins()
    logits = np.zeros((1, NUM_BINS, 2, 2), np.float32)
    mode = int(np.argmin(np.hypot(bins[:, 0] - 60, bins[:, 1] - 60)))
    logits[0, mode] = 2.0
    engine = _logits_model(tmp_path, logits)
    l_input = np.full((1, 8, 8), 50.0, np.float32)
    near_mode = engine.predict_ab(l_input, 0.05)[0, 0, 0]
    at_mean = engine.predict_ab(l_input, 1.0)[0, 0, 0]
    np.testing.assert_allclose(near_mode, bins[mode], atol=0.5)
    weights = np.exp(logits[0, :, 0, 0])
    np.testing.assert_allclose(at_mean, (weights / weights.sum()) @ bins, atol=1e-2)


@pytest.mark.parametrize("temperature", [0.0, 0.01, 1.5, -1.0])
def test_temperature_outside_the_documented_range_is_refused(tmp_path: Path, temperature: float) -> None:
    engine = Engine.load(build_test_model(tmp_path), device="cpu", threads=1)
    with pytest.raises(InvalidRequest):
        engine.predict_ab(np.zeros((1, 64, 64), np.float32), temperature)


def test_colorize_keeps_size_and_lightness_and_adds_colour(tmp_path: Path) -> None:
    engine = Engine.load(build_test_model(tmp_path), device="cpu", threads=1)
    gradient = np.tile(np.linspace(0, 255, 301, dtype=np.uint8)[None, :, None], (157, 1, 3))
    small = np.full((5, 3, 3), 128, np.uint8)
    outputs = colorize(engine, [gradient, small, gradient[:40]], batch_size=2)
    assert [o.shape for o in outputs] == [(157, 301, 3), (5, 3, 3), (40, 301, 3)]
    assert np.abs(lightness(outputs[0]) - lightness(gradient)).mean() < 4
    chroma = np.hypot(*bgr_to_lab(outputs[0])[..., 1:].transpose(2, 0, 1))
    assert chroma.mean() > 5


def test_manifest_checksum_is_verified(tmp_path: Path) -> None:
    manifest = build_test_model(tmp_path)
    with manifest.path.open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelFileError):
        Engine.load(manifest, device="cpu")


def test_unknown_model_lists_the_installed_ones(tmp_path: Path) -> None:
    build_test_model(tmp_path, name="one")
    assert [m.name for m in installed_models(tmp_path)] == ["one"]
    with pytest.raises(ModelNotFound, match="one"):
        load_manifest(tmp_path, "two")
