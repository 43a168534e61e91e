"""Training recipe pieces and the train -> export -> engine path (needs the train extra)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from models.training import train as training  # noqa: E402
from models.training.export import export  # noqa: E402
from models.training.targets import rebalancing_weights, soft_encode  # noqa: E402
from shared.bins import ab_bins  # noqa: E402
from shared.manifests import load_manifest  # noqa: E402
from worker.colorizer import colorize  # noqa: E402
from worker.engine import Engine  # noqa: E402


def test_soft_encoding_puts_gaussian_weight_on_five_nearest_bins() -> None:
    bins = torch.from_numpy(ab_bins().copy())
    ab = torch.tensor([[[[0.0]], [[0.0]]], [[[33.0]], [[-17.0]]]])  # (2, 2, 1, 1)
    targets, nearest = soft_encode(ab, bins)
    assert targets.shape == (2, 313, 1, 1)
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(2, 1, 1))
    assert ((targets > 0).sum(dim=1) == 5).all()
    grey = int(np.flatnonzero((ab_bins() == 0).all(axis=1))[0])
    assert nearest[0, 0, 0] == grey and targets[0, grey, 0, 0] == targets[0, :, 0, 0].max()
    assert tuple(ab_bins()[nearest[1, 0, 0]]) == (30.0, -20.0)


def test_rebalancing_weights_have_unit_expectation_and_favour_rare_bins() -> None:
    counts = np.ones(313)
    counts[0] = 10_000.0  # one very common bin
    weights, smoothed = rebalancing_weights(counts, ab_bins().astype(np.float64))
    assert smoothed.sum() == pytest.approx(1.0)
    assert (smoothed * weights).sum() == pytest.approx(1.0)
    assert weights[0] < weights[200]
    # mixing with uniform (lambda = 0.5) bounds the spread: max/min <= Q (1 - lambda) / lambda + 1
    assert weights.max() / weights.min() <= 313 * 0.5 / 0.5 + 1


def test_a_short_run_exports_a_model_the_engine_serves(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        image = cv2.resize(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), (96, 80), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(photos / f"p{i}.png"), image)
    run = tmp_path / "run"
    training.train(training.parse_args([
        "--data", str(photos), "--val", str(photos), "--out", str(run), "--size", "32", "--crop", "32",
        "--batch-size", "4", "--steps", "3", "--widths", "4", "4", "8", "8", "8", "--device", "cpu",
    ]))
    assert len((run / "log.jsonl").read_text().splitlines()) == 3  # one record per epoch (1 step each)
    # resumable: a second call with the same run folder continues from the checkpoint, adding nothing
    training.train(training.parse_args([
        "--data", str(photos), "--out", str(run), "--size", "32", "--crop", "32", "--batch-size", "4",
        "--steps", "3", "--widths", "4", "4", "8", "8", "8", "--device", "cpu",
    ]))
    assert len((run / "log.jsonl").read_text().splitlines()) == 3
    manifest = export(run, tmp_path / "models", "tiny", "test", input_size=32)
    assert manifest.raw["training"]["steps"] == 3 and (manifest.directory / "training_curve.png").exists()
    engine = Engine.load(load_manifest(tmp_path / "models", "tiny"), device="cpu", threads=1)
    out = colorize(engine, [np.full((50, 70, 3), 120, np.uint8)], batch_size=1)
    assert out[0].shape == (50, 70, 3)
