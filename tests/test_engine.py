"""The model side: bins, decoding head, engine and colorizer (no network, no official weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from models.onnx_head import annealed_mean, append_annealed_mean_head, prior_bias, with_prior_bias
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


def _fixed_logits_graph(logits: np.ndarray) -> onnx.ModelProto:
    """A graph that ignores L and returns fixed logits."""
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
    return model


def _logits_model(tmp_path: Path, logits: np.ndarray, bias: np.ndarray | None = None, name: str = "fixed") -> Engine:
    """The fixed-logits graph with the decoding head (and ``bias``, when given) appended."""
    return _engine(tmp_path, append_annealed_mean_head(_fixed_logits_graph(logits), "logits", ab_bins(), bias), name)


def _engine(tmp_path: Path, model: onnx.ModelProto, name: str) -> Engine:
    directory = tmp_path / name
    directory.mkdir()
    onnx.save(model, directory / "model.onnx")
    manifest = write_manifest(
        directory,
        {
            "name": name,
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


def _chroma_weights() -> np.ndarray:
    """Rebalancing weights shaped like a trained model's: small on neutral bins, large on vivid ones."""
    bins = ab_bins().astype(np.float64)
    return np.exp(np.hypot(bins[:, 0], bins[:, 1]) / 40.0) / 5.0


def test_head_without_prior_correction_decodes_exactly_as_before(tmp_path: Path) -> None:
    logits = np.random.default_rng(2).normal(0, 3, (1, NUM_BINS, 2, 2)).astype(np.float32)
    plain = append_annealed_mean_head(_fixed_logits_graph(logits), "logits", ab_bins())
    corrected = with_prior_bias(plain, prior_bias(_chroma_weights(), 1.0))
    reverted = with_prior_bias(corrected, None)  # what alpha = 0 writes
    assert reverted.SerializeToString() == plain.SerializeToString()
    before = _engine(tmp_path, plain, "plain")
    after = _engine(tmp_path, reverted, "reverted")
    l_input = np.full((1, 8, 8), 50.0, np.float32)
    for temperature in (0.38, 0.8):
        expected = annealed_mean(logits[0], ab_bins(), temperature).transpose(1, 2, 0)
        unbiased = annealed_mean(logits[0], ab_bins(), temperature, prior_bias(_chroma_weights(), 0.0))
        assert np.array_equal(unbiased.transpose(1, 2, 0), expected)
        assert np.array_equal(after.predict_ab(l_input, temperature), before.predict_ab(l_input, temperature))
        np.testing.assert_allclose(after.predict_ab(l_input, temperature)[0], expected, atol=1e-3)


def test_head_with_prior_correction_matches_numpy_reference(tmp_path: Path) -> None:
    logits = np.random.default_rng(3).normal(0, 3, (1, NUM_BINS, 2, 2)).astype(np.float32)
    bias = prior_bias(_chroma_weights(), 0.75)
    engine = _logits_model(tmp_path, logits, bias)
    l_input = np.full((1, 8, 8), 50.0, np.float32)
    for temperature in (0.05, 0.38, 1.0):
        expected = annealed_mean(logits[0], ab_bins(), temperature, bias).transpose(1, 2, 0)
        np.testing.assert_allclose(engine.predict_ab(l_input, temperature)[0], expected, atol=1e-3)


def test_prior_correction_moves_ab_toward_neutral_where_weights_are_large(tmp_path: Path) -> None:
    # What rebalanced training learns where the truth is neutral: a posterior peaked at grey,
    # times the weights, which favour vivid bins.
    bins = ab_bins().astype(np.float64)
    posterior = -(bins[:, 0] ** 2 + bins[:, 1] ** 2) / (2 * 35.0**2)
    logits = np.tile((posterior + np.log(_chroma_weights())).astype(np.float32)[None, :, None, None], (1, 1, 2, 2))
    logits += np.random.default_rng(4).normal(0, 0.2, logits.shape).astype(np.float32)
    l_input = np.full((1, 8, 8), 50.0, np.float32)
    chroma = []
    for alpha in (0.0, 0.5, 1.0):
        bias = prior_bias(_chroma_weights(), alpha) if alpha else None
        ab = _logits_model(tmp_path, logits, bias, f"alpha-{alpha}").predict_ab(l_input, 0.8)
        chroma.append(np.hypot(ab[..., 0], ab[..., 1]))
    assert np.all(chroma[1] < chroma[0]) and np.all(chroma[2] < chroma[1]), chroma
    assert chroma[2].max() < 0.5 * chroma[0].min()


def test_prior_bias_needs_positive_weights() -> None:
    with pytest.raises(ValueError):
        prior_bias(np.array([1.0, 0.0]), 0.5)


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
