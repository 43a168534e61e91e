"""The hint model's pieces: simulated hints, the branch, its export joined to a base, and eval --hints."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

torch = pytest.importorskip("torch")

from models.evaluation import evaluate, table_rows
from models.hint_simulation import hint_count, photo_hints, simulate
from models.onnx_head import annealed_mean, append_annealed_mean_head
from models.training import train_hints
from models.training.hint_branch import HintBranch
from models.training.hint_export import export
from models.training.hint_propagation import HintAttention
from shared.colour.bins import NUM_BINS, ab_bins
from shared.colour.colorizer import colorize
from shared.colour.engine import Engine
from shared.colour.hint_planes import hint_ab, hint_planes
from shared.colour.model_manifests import write_manifest
from tests.model_builder import build_test_model

FEATURES = 4
SIZE = 32


def test_simulated_hints_are_patch_means_of_the_truth_and_repeat_per_photo() -> None:
    photo = np.zeros((40, 60, 3), np.uint8)
    photo[:, :30] = (200, 60, 30)  # blue left half
    photo[:, 30:] = (40, 160, 60)  # green right half
    first, again = photo_hints(photo, 12, "a.jpg"), photo_hints(photo, 12, "a.jpg")
    assert first == again and first != photo_hints(photo, 12, "b.jpg")
    for hint in first:
        column = int(hint.x * 60)
        truth = cv2.cvtColor(photo[:1, column : column + 1].astype(np.float32) / 255, cv2.COLOR_BGR2Lab)[0, 0, 1:]
        if abs(column - 29.5) > 3:  # patches straddling the edge mix both colours
            assert np.linalg.norm(np.array(hint_ab(hint.color)) - truth) < 2
    rng = np.random.default_rng(0)
    counts = [hint_count(rng) for _ in range(2000)]
    assert min(counts) == 1 and max(counts) == 50 and np.median(counts) < 8
    assert len(simulate(np.zeros((8, 8, 2), np.float32), 5, rng)) == 5


def _tiny_base(directory: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A base model: L -> 4x4 stride-4 conv (FEATURES) -> ReLU -> 1x1 classifier -> head with a prior bias."""
    rng = np.random.default_rng(3)
    w1 = rng.normal(0, 0.05, (FEATURES, 1, 4, 4)).astype(np.float32)
    b1 = rng.normal(0, 0.5, FEATURES).astype(np.float32)
    w2 = rng.normal(0, 0.5, (NUM_BINS, FEATURES, 1, 1)).astype(np.float32)
    b2 = rng.normal(0, 0.5, NUM_BINS).astype(np.float32)
    bias = rng.normal(0, 0.3, NUM_BINS).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["l", "w1", "b1"], ["pre"], kernel_shape=[4, 4], strides=[4, 4]),
            helper.make_node("Relu", ["pre"], ["features"]),
            helper.make_node("Conv", ["features", "w2", "b2"], ["logits"], kernel_shape=[1, 1]),
        ],
        "tiny_base",
        [helper.make_tensor_value_info("l", TensorProto.FLOAT, ["N", 1, "H", "W"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", NUM_BINS, "h", "w"])],
        [numpy_helper.from_array(v, n) for v, n in [(w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2")]],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    directory.mkdir(parents=True)
    onnx.save(append_annealed_mean_head(model, "logits", ab_bins(), bias), directory / "model.onnx")
    np.savez(directory / "bin_stats.npz", weights=np.ones(NUM_BINS))
    write_manifest(
        directory,
        {
            "name": directory.name,
            "file": "model.onnx",
            "input": {"name": "l", "size": SIZE},
            "output": {"name": "ab", "downsample": 4},
            "temperature": 0.5,
            "architecture": {"parameters": 10},
        },
    )
    return w1, b1, w2, b2, bias


def _trained_run(run: Path) -> HintBranch:
    torch.manual_seed(0)
    branch = HintBranch(FEATURES, width=8, dilations=(1, 2))
    for parameter in branch.out.parameters():  # as if trained: offsets that are not zero
        torch.nn.init.normal_(parameter, 0, 0.5)
    run.mkdir()
    torch.save({"branch": branch.state_dict(), "config": branch.config, "record": {"step": 1}}, run / "branch.pt")
    (run / "summary.json").write_text(
        json.dumps({"options": {"data": "/x/y/train"}, "steps": 1, "samples": 8, "seconds": 1})
    )
    return branch.eval()


def test_the_exported_hint_model_is_the_base_plus_the_branch(tmp_path: Path) -> None:
    w1, b1, w2, b2, bias = _tiny_base(tmp_path / "models" / "base")
    branch = _trained_run(tmp_path / "run")
    manifest = export(tmp_path / "run", tmp_path / "models" / "base", tmp_path / "models", "base-hints", "train it")
    assert manifest.hints and manifest.probabilities_output == "probabilities"
    assert manifest.raw["training"]["options"]["data"] == "y/train"
    hinted = Engine.load(manifest, device="cpu", threads=1)
    base = Engine.load(
        write_manifest(
            tmp_path / "models" / "base", json.loads((tmp_path / "models" / "base" / "manifest.json").read_text())
        ),
        device="cpu",
        threads=1,
    )
    lightness = np.random.default_rng(1).uniform(0, 100, (2, SIZE, SIZE)).astype(np.float32)
    # Without hints: the base's output exactly.
    np.testing.assert_allclose(hinted.predict_ab(lightness), base.predict_ab(lightness), atol=1e-3)
    # With hints: the base's logits plus the branch's offsets, through the same head.
    from shared.colour.hints import Hint

    hints = [[Hint(0.3, 0.6, "#3060d0")], []]
    ab = hinted.predict_ab(lightness, hints=hints)
    with torch.no_grad():
        l_input = torch.from_numpy(lightness[:, None] - 50)
        features = torch.relu(torch.nn.functional.conv2d(l_input, torch.from_numpy(w1), torch.from_numpy(b1), stride=4))
        logits = torch.nn.functional.conv2d(features, torch.from_numpy(w2), torch.from_numpy(b2))
        planes = [hint_planes(h, SIZE) for h in hints]
        offsets = branch(
            features,
            torch.from_numpy(np.stack([p[0] for p in planes])),
            torch.from_numpy(np.stack([p[1] for p in planes])),
        )
    expected = annealed_mean((logits + offsets)[0].numpy(), ab_bins(), 0.5, bias)
    np.testing.assert_allclose(ab[0], expected.transpose(1, 2, 0), atol=1e-3)
    assert np.abs(ab[0] - base.predict_ab(lightness)[0]).max() > 1  # the hint changed something
    np.testing.assert_allclose(ab[1], base.predict_ab(lightness)[1], atol=1e-3)
    probabilities = hinted.predict_probabilities(lightness, hints=hints)
    assert probabilities.shape == (2, NUM_BINS, SIZE // 4, SIZE // 4)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)


def test_a_branch_goes_on_learning_from_the_weights_inside_its_exported_model(tmp_path: Path) -> None:
    from models.training.train_hints import initial_branch_state

    _tiny_base(tmp_path / "models" / "base")
    branch = _trained_run(tmp_path / "run")
    export(tmp_path / "run", tmp_path / "models" / "base", tmp_path / "models", "base-hints", "train it")
    recovered = initial_branch_state(tmp_path / "models" / "base-hints")
    assert recovered.keys() == branch.state_dict().keys()
    for name, value in branch.state_dict().items():
        torch.testing.assert_close(recovered[name], value)
    assert initial_branch_state(tmp_path / "run").keys() == recovered.keys()


def test_training_attends_to_hinted_cells_only_and_matches_the_exported_dense_form() -> None:
    torch.manual_seed(0)
    attention = HintAttention(8)
    features = torch.randn(3, 8, 10, 10)
    occupied = (torch.rand(3, 1, 10, 10) < 0.05).float()
    occupied[0, 0, 2, 3] = 1.0
    occupied[2] = 0.0  # a photo without hints in the batch
    ab = torch.randn(3, 2, 10, 10) * 30 * occupied
    dense = attention.towards_every_cell(features, ab, occupied)
    sparse = attention.towards_hinted_cells(features, ab, occupied)
    for full, few in zip(dense, sparse, strict=True):
        assert torch.allclose(full, few, atol=1e-4)
    assert float(dense[1][0].max()) > 0.01 and float(dense[1][2].max()) == 0.0


def test_a_short_training_run_keeps_a_branch(tmp_path: Path) -> None:
    _tiny_base(tmp_path / "models" / "base")
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        image = cv2.resize(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8), (180, 170), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(photos / f"p{i}.png"), image)
    options = ["--base", str(tmp_path / "models" / "base"), "--data", str(photos), "--images", "2", "--val-images", "2"]
    options += [
        "--out",
        str(tmp_path / "run"),
        "--minutes",
        "0.01",
        "--batch",
        "2",
        "--width",
        "8",
        "--eval-every",
        "1",
    ]
    train_hints.main(options)
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert records and all(np.isfinite(r["val_loss_10_hints"]) for r in records)
    state = torch.load(tmp_path / "run" / "branch.pt", weights_only=False)
    assert state["config"]["feature_channels"] == FEATURES


def test_eval_scores_hinted_rows_beside_the_automatic_ones(tmp_path: Path) -> None:
    engine = Engine.load(
        build_test_model(tmp_path / "models", name="hinted", input_size=16, hints=True), device="cpu", threads=1
    )
    folder = tmp_path / "photos" / "blue"
    folder.mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(folder / f"p{i}.png"), np.full((48, 64, 3), (200, 120, 60), np.uint8))
    files = sorted(folder.iterdir())
    methods = {"automatic": lambda images: colorize(engine, images, 4)}
    hinted = {"automatic +20 hints": lambda images, hints: colorize(engine, images, 4, hints=hints)}
    tallies, sheet = evaluate(files, tmp_path / "photos", methods, sheet_rows=1, hinted=hinted, hints=20)
    rows = {row["method"]: row for row in table_rows(tallies, judged=False)}
    assert set(rows) == {"automatic", "automatic +20 hints"}
    assert float(rows["automatic +20 hints"]["PSNR (dB)"]) > float(rows["automatic"]["PSNR (dB)"]) + 1
    assert len(sheet[0]) == 4  # grey, automatic, hinted (points ringed), original
