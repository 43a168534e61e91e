"""Re-heading installed models: the prior correction of the shipped colorize-lite, the manifest's
``prior_alpha``, and ``colorize models decoding``."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from cli.main import main as cli_main
from models.onnx_head import annealed_mean, head_logits_name, head_prior_bias
from models.prior_correction import set_decoding
from shared.colour.bins import ab_bins
from shared.colour.colorizer import colorize, model_input
from shared.colour.engine import Engine
from shared.colour.lab import bgr_to_lab
from shared.colour.model_manifests import ModelManifest, load_manifest
from shared.errors import InvalidRequest, ModelFileError
from shared.settings import PROJECT_ROOT
from tests.model_builder import build_test_model

SHIPPED = PROJECT_ROOT / "models" / "colorize-lite"
MAX_MODEL_BYTES = 25 * 1024 * 1024


def _installed_copy(models_dir: Path) -> Path:
    shutil.copytree(SHIPPED, models_dir / SHIPPED.name)
    return models_dir


def _scene() -> np.ndarray:
    """A grey photo-like scene: sky gradient over a darker ground with texture."""
    rng = np.random.default_rng(0)
    rows = np.linspace(200, 60, 160)[:, None] * np.ones((1, 200))
    grey = np.clip(rows + rng.normal(0, 12, rows.shape), 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.GaussianBlur(grey, (5, 5), 0), cv2.COLOR_GRAY2BGR)


def _output(models_dir: Path, photo: np.ndarray) -> np.ndarray:
    engine = Engine.load(load_manifest(models_dir, SHIPPED.name), device="cpu", threads=1)
    return colorize(engine, [photo], batch_size=1)[0]


def _network_logits(manifest: ModelManifest, l_input: np.ndarray) -> np.ndarray:
    """The shipped network's logits, from its graph without the decoding head."""
    model = onnx.load(str(manifest.path))
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info(head_logits_name(model), TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    centred = ((l_input - manifest.l_subtract) / manifest.l_divide)[:, None].astype(np.float32)
    logits: np.ndarray = session.run(None, {"l": centred, "inv_temperature": np.ones(len(l_input), np.float32)})[0]
    return logits


def test_alpha_zero_on_the_shipped_model_decodes_its_network_without_correction(tmp_path: Path) -> None:
    _installed_copy(tmp_path)
    manifest = set_decoding(tmp_path, SHIPPED.name, 0.0)
    assert manifest.prior_alpha == 0.0 and head_prior_bias(onnx.load(str(manifest.path))) is None
    l_input = model_input(bgr_to_lab(_scene())[..., 0], manifest.input_size)[None]
    ab = Engine.load(manifest, device="cpu", threads=1).predict_ab(l_input)[0]
    expected = annealed_mean(_network_logits(manifest, l_input)[0], ab_bins(), manifest.temperature)
    np.testing.assert_allclose(ab, expected.transpose(1, 2, 0), atol=1e-3)


def test_reheading_back_to_the_shipped_alpha_gives_the_shipped_output_exactly(tmp_path: Path) -> None:
    shipped = load_manifest(_installed_copy(tmp_path), SHIPPED.name)
    before = _output(tmp_path, _scene())
    set_decoding(tmp_path, SHIPPED.name, 0.0)
    set_decoding(tmp_path, SHIPPED.name, 1.0, temperature=0.8)
    manifest = set_decoding(tmp_path, SHIPPED.name, shipped.prior_alpha, temperature=shipped.temperature)
    assert manifest.sha256 == shipped.sha256
    assert np.array_equal(_output(tmp_path, _scene()), before)


def test_prior_correction_of_the_shipped_model_makes_it_less_saturated(tmp_path: Path) -> None:
    _installed_copy(tmp_path)
    set_decoding(tmp_path, SHIPPED.name, 0.0, temperature=0.5)
    uncorrected = _output(tmp_path, _scene())
    manifest = set_decoding(tmp_path, SHIPPED.name, 1.0)
    assert (manifest.prior_alpha, manifest.temperature) == (1.0, 0.5)
    written = json.loads((manifest.directory / "manifest.json").read_text())
    assert (written["prior_alpha"], written["temperature"]) == (1.0, 0.5)
    manifest.verify_file()  # the manifest's sha256 is that of the rewritten file
    assert manifest.path.stat().st_size <= MAX_MODEL_BYTES
    corrected = _output(tmp_path, _scene())
    chroma_before = np.hypot(*bgr_to_lab(uncorrected)[..., 1:].transpose(2, 0, 1)).mean()
    chroma_after = np.hypot(*bgr_to_lab(corrected)[..., 1:].transpose(2, 0, 1)).mean()
    assert chroma_after < 0.8 * chroma_before, (chroma_before, chroma_after)


def test_a_model_without_bin_statistics_keeps_alpha_zero(tmp_path: Path) -> None:
    build_test_model(tmp_path, name="no-stats")
    with pytest.raises(ModelFileError, match="bin_stats.npz"):
        set_decoding(tmp_path, "no-stats", 0.5)
    assert set_decoding(tmp_path, "no-stats", 0.0).prior_alpha == 0.0


@pytest.mark.parametrize("alpha", [-0.1, 2.5, float("nan")])
def test_alpha_outside_its_range_is_refused_before_anything_is_written(tmp_path: Path, alpha: float) -> None:
    manifest = build_test_model(tmp_path, name="tiny")
    with pytest.raises(InvalidRequest):
        set_decoding(tmp_path, "tiny", alpha)
    assert load_manifest(tmp_path, "tiny").sha256 == manifest.sha256


def test_manifest_prior_alpha_defaults_to_zero_and_is_validated(tmp_path: Path) -> None:
    manifest = build_test_model(tmp_path, name="tiny")
    assert manifest.prior_alpha == 0.0
    path = manifest.directory / "manifest.json"
    data = json.loads(path.read_text())
    data["prior_alpha"] = 3.0
    path.write_text(json.dumps(data))
    with pytest.raises(ModelFileError, match="prior_alpha"):
        load_manifest(tmp_path, "tiny")


def test_models_decoding_command_reheads_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _installed_copy(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    argv = ["models", "decoding", SHIPPED.name, "--prior-alpha", "0.5", "--temperature", "0.38"]
    code = cli_main([*argv, "--models-dir", str(tmp_path)], env={}, stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    manifest = load_manifest(tmp_path, SHIPPED.name)
    assert (manifest.prior_alpha, manifest.temperature) == (0.5, 0.38)
    assert "prior_alpha 0.5" in capsys.readouterr().out
    code = cli_main([*argv[:3], "--prior-alpha", "9", "--models-dir", str(tmp_path)], env={}, stdout=out, stderr=err)
    assert code == 1 and "prior_alpha must be between" in capsys.readouterr().err
