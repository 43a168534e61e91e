"""Re-heading installed models: the prior correction of the shipped colorize-lite, the manifest's
``prior_alpha``, and ``colorize models decoding``."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from cli.main import main as cli_main
from models.prior_correction import set_decoding
from shared.colour.colorizer import colorize
from shared.colour.engine import Engine
from shared.colour.lab import bgr_to_lab
from shared.colour.model_manifests import load_manifest
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


def test_alpha_zero_on_the_shipped_model_decodes_exactly_as_shipped(tmp_path: Path) -> None:
    shipped = load_manifest(_installed_copy(tmp_path), SHIPPED.name)
    before = _output(tmp_path, _scene())
    set_decoding(tmp_path, SHIPPED.name, 1.0)
    manifest = set_decoding(tmp_path, SHIPPED.name, 0.0)
    assert manifest.prior_alpha == 0.0 and manifest.temperature == shipped.temperature
    assert np.array_equal(_output(tmp_path, _scene()), before)


def test_prior_correction_of_the_shipped_model_makes_it_less_saturated(tmp_path: Path) -> None:
    _installed_copy(tmp_path)
    before = _output(tmp_path, _scene())
    manifest = set_decoding(tmp_path, SHIPPED.name, 1.0, temperature=0.5)
    assert (manifest.prior_alpha, manifest.temperature) == (1.0, 0.5)
    written = json.loads((manifest.directory / "manifest.json").read_text())
    assert (written["prior_alpha"], written["temperature"]) == (1.0, 0.5)
    manifest.verify_file()  # the manifest's sha256 is that of the rewritten file
    assert manifest.path.stat().st_size <= MAX_MODEL_BYTES
    after = _output(tmp_path, _scene())
    chroma_before = np.hypot(*bgr_to_lab(before)[..., 1:].transpose(2, 0, 1)).mean()
    chroma_after = np.hypot(*bgr_to_lab(after)[..., 1:].transpose(2, 0, 1)).mean()
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
