"""Training recipe pieces and the train -> export -> engine path (needs the train extra)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from models.training import train as training
from models.training.export import export
from models.training.targets import rebalancing_weights, soft_encode
from shared.colour.bins import ab_bins
from shared.colour.colorizer import colorize
from shared.colour.engine import Engine
from shared.colour.model_manifests import load_manifest


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
    options = ["--data", str(photos), "--out", str(run), "--size", "32", "--crop", "32", "--batch-size", "4"]
    options += ["--steps", "3", "--widths", "4", "4", "8", "8", "8", "--device", "cpu"]
    training.train(training.parse_args([*options, "--val", str(photos)]))
    assert len((run / "log.jsonl").read_text().splitlines()) == 3  # one record per epoch (1 step each)
    # resumable: a second call with the same run folder continues from the checkpoint, adding nothing
    training.train(training.parse_args(options))
    assert len((run / "log.jsonl").read_text().splitlines()) == 3
    manifest = export(run, tmp_path / "models", "tiny", "test", input_size=32)
    assert manifest.raw["training"]["steps"] == 3 and (manifest.directory / "training_curve.png").exists()
    engine = Engine.load(load_manifest(tmp_path / "models", "tiny"), device="cpu", threads=1)
    out = colorize(engine, [np.full((50, 70, 3), 120, np.uint8)], batch_size=1)
    assert out[0].shape == (50, 70, 3)


def test_sparse_soft_encoding_gives_the_same_loss_as_the_dense_one() -> None:
    from models.training.targets import rebalanced_cross_entropy, soft_encode_sparse, sparse_rebalanced_cross_entropy

    generator = torch.Generator().manual_seed(0)
    bins = torch.from_numpy(ab_bins().copy())
    ab = torch.rand(3, 2, 4, 5, generator=generator) * 160 - 80
    logits = torch.randn(3, 313, 4, 5, generator=generator)
    rebalance = torch.rand(313, generator=generator) + 0.5
    targets, nearest = soft_encode(ab, bins)
    near, weights = soft_encode_sparse(ab, bins)
    assert torch.equal(near[:, 0], nearest)
    dense = rebalanced_cross_entropy(logits, targets, nearest, rebalance)
    torch.testing.assert_close(sparse_rebalanced_cross_entropy(logits, near, weights, rebalance), dense)


def synthetic_photos(folder: Path, count: int) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        image = cv2.resize(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), (96, 80), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(folder / f"p{i}.png"), image)
    return folder


def test_the_packaged_encoder_weights_recognise_a_cat_through_the_grey_input() -> None:
    skimage_data = pytest.importorskip("skimage.data")
    from models.training.encoder import pretrained_classifier

    cat = cv2.resize(skimage_data.chelsea(), (224, 224), interpolation=cv2.INTER_AREA)
    grey = np.repeat(cv2.cvtColor(cat, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2).astype(np.float32)
    batch = torch.from_numpy((grey - 127.0) / 128.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        top = int(pretrained_classifier("lite0")(batch).argmax())
    assert top == 285  # Egyptian cat


def test_a_two_stage_run_keeps_its_best_checkpoint_and_exports_a_served_model(tmp_path: Path) -> None:
    from models.training import train_pretrained

    photos = synthetic_photos(tmp_path / "photos", 6)
    run = tmp_path / "run"
    args = [
        "--data",
        str(photos),
        "--val",
        str(photos),
        "--out",
        str(run),
        "--source-size",
        "64",
        "--size",
        "64",
        "--views",
        "1",
        "--decoder-epochs",
        "1",
        "--batch-size",
        "3",
        "--finetune-steps",
        "2",
        "--eval-every",
        "1",
        "--threads",
        "1",
    ]
    train_pretrained.train(train_pretrained.parse_args(args))
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in log if "val_auc_rebalanced" in r] == [0, 1, 2, 2]  # untrained, epoch, 2 steps
    best = max(r["val_auc_rebalanced"] for r in log if "val_auc_rebalanced" in r)
    kept = torch.load(run / "weights.pt", weights_only=False)
    assert kept["score"]["auc_rebalanced"] == pytest.approx(best, abs=1e-3)
    # a rerun finds the run complete and adds nothing
    train_pretrained.train(train_pretrained.parse_args(args))
    assert len((run / "log.jsonl").read_text().splitlines()) == len(log)
    # stage 2 alone, from the kept weights of that run
    again = tmp_path / "stage2"
    out_at = args.index("--out") + 1
    stage2_args = [*args[:out_at], str(again), *args[out_at + 1 :], "--stage2-from", str(run / "weights.pt")]
    train_pretrained.train(train_pretrained.parse_args(stage2_args))
    stage2_log = [json.loads(line) for line in (again / "log.jsonl").read_text().splitlines()]
    # scored once before its first step (the kept weights of another run's selection), then per step
    assert [(r["stage"], r["step"]) for r in stage2_log if "val_auc_rebalanced" in r] == [(2, 0), (2, 1), (2, 2)]
    restarted = torch.load(again / "weights.pt", weights_only=False)
    assert restarted["score"]["auc_rebalanced"] >= kept["score"]["auc_rebalanced"]
    # the encoder's weights moved but its normalisation statistics stayed those stage 1 learnt with
    before, after = kept["model"], torch.load(again / "checkpoint.pt", weights_only=False)["model"]
    encoder_keys = [k for k in before if k.startswith("encoder.")]
    statistics = [k for k in encoder_keys if k.endswith(("running_mean", "running_var"))]
    weights = [k for k in encoder_keys if k.endswith("weight") and before[k].dim() == 4]
    assert statistics and all(torch.equal(before[k], after[k]) for k in statistics)
    assert any(not torch.equal(before[k], after[k]) for k in weights)
    manifest = export(run, tmp_path / "models", "tiny-lite", "test", input_size=64)
    assert manifest.raw["architecture"]["family"] == "efficientnet-lite-unet"
    assert not any(str(v).startswith("/") for v in manifest.raw["training"]["options"].values())
    engine = Engine.load(load_manifest(tmp_path / "models", "tiny-lite"), device="cpu", threads=1)
    out = colorize(engine, [np.full((50, 70, 3), 120, np.uint8)], batch_size=1)
    assert out[0].shape == (50, 70, 3)


def test_a_run_selected_by_psnr_per_source_keeps_the_best_such_score(tmp_path: Path) -> None:
    from models.training import train_pretrained

    photos = tmp_path / "photos"
    photos.mkdir()
    for source in ("people", "streets"):
        synthetic_photos(photos / source, 3)
    run = tmp_path / "run"
    args = ["--data", str(photos), "--val", str(photos), "--out", str(run), "--source-size", "64", "--size", "64"]
    args += ["--views", "1", "--decoder-epochs", "1", "--batch-size", "3", "--finetune-steps", "2"]
    args += ["--eval-every", "1", "--threads", "1", "--val-per-source", "2", "--auc-weight", "0.3"]
    args += ["--share", "people=0.8", "--scan-share", "0.5", "--rebalance-mix", "0.7", "--semantic-weight", "0.1"]
    train_pretrained.train(train_pretrained.parse_args(args))
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    scored = [r for r in log if "val_selection_score" in r]
    assert [r["stage"] for r in scored] == [0, 1, 2, 2]
    for record in scored:
        gains = [record["val_psnr_gain_people"], record["val_psnr_gain_streets"]]
        expected = min(gains) + sum(gains) / 2 + 0.3 * record["val_auc_rebalanced_gain"]
        assert record["val_selection_score"] == pytest.approx(expected, abs=2e-3)
    kept = torch.load(run / "weights.pt", weights_only=False)
    assert kept["score"]["selection_score"] == pytest.approx(max(r["val_selection_score"] for r in scored), abs=1e-3)
    # the rebalancing follows lambda: 0.7 of uniform flattens the weights against the paper's 0.5
    weights = np.load(run / "bin_stats.npz")["weights"]
    counts = np.load(run / "bin_stats.npz")["counts"]
    paper, _ = rebalancing_weights(counts, ab_bins().astype(np.float64), 0.5)
    assert weights.max() < paper.max()


def test_live_features_are_fresh_views_shaped_like_the_cached_ones() -> None:
    from models.training.augment import Jitter
    from models.training.encoder import LiteEncoder
    from models.training.feature_cache import FeatureCache, LiveFeatures, Views
    from models.training.train import mixed_precision

    encoder = LiteEncoder("lite0", pretrained=False)
    crops = torch.from_numpy(np.random.default_rng(0).uniform(0, 60, (4, 3, 80, 80)).astype(np.float16))
    generator = torch.Generator().manual_seed(0)
    views = Views(crops, 2, 64, Jitter(), generator)
    cache = FeatureCache.build(encoder, views)
    live = LiveFeatures(encoder, views, mixed_precision(torch.device("cpu")))
    assert len(live) == len(cache) == 8
    index = np.array([0, 5, 7])
    (cached_features, cached_ab), (live_features, live_ab) = cache.batch(index), live.batch(index)
    assert [f.shape for f in live_features] == [f.shape for f in cached_features]
    assert live_ab.shape == cached_ab.shape == (3, 2, 16, 16)
    # every batch is a new random view, so the same index gives other targets
    assert not torch.equal(live.batch(index)[1], live_ab)


def test_a_run_given_a_wall_clock_budget_sets_its_step_count_to_end_within_it(tmp_path: Path) -> None:
    from models.training import train_pretrained

    photos = synthetic_photos(tmp_path / "photos", 6)
    run = tmp_path / "run"
    budget = 30.0
    args = ["--data", str(photos), "--val", str(photos), "--out", str(run), "--source-size", "64", "--size", "64"]
    args += ["--views", "1", "--decoder-epochs", "1", "--batch-size", "3", "--finish-within", str(budget)]
    args += ["--eval-every", "100000", "--threads", "1"]
    train_pretrained.train(train_pretrained.parse_args(args))
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    planned = next(r["total_steps"] for r in log if "total_steps" in r)
    assert planned > 40  # the timed steps, then as many as the budget leaves
    last = log[-1]
    assert (last["stage"], last["step"]) == (2, planned)
    assert last["seconds"] <= budget + 15  # one selection pass of slack, on a busy machine


def _lab_crops(count: int, size: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    l = 100 * torch.rand(count, 1, size, size, generator=generator)
    ab = 60 * torch.rand(count, 2, size, size, generator=generator) - 30
    return torch.cat([l, ab], dim=1)


def test_scan_like_views_keep_l_in_range_and_leave_the_colour_targets_alone() -> None:
    from models.training.augment import Jitter, training_view
    from models.training.scan_augment import EFFECTS, ScanEffects

    crops = _lab_crops(64, 48)
    every_effect = ScanEffects(**{effect: 1.0 for effect in EFFECTS})
    clean_l, clean_ab = training_view(crops, 32, Jitter(), torch.Generator().manual_seed(3))
    scan_l, scan_ab = training_view(crops, 32, Jitter(), torch.Generator().manual_seed(3), every_effect)
    torch.testing.assert_close(scan_ab, clean_ab, rtol=0, atol=0)
    assert scan_l.min() >= -50.0 and scan_l.max() <= 50.0
    assert ((scan_l - clean_l).abs().amax(dim=(1, 2, 3)) > 1.0).all()


@pytest.mark.parametrize("effect", ["fade", "exposure", "blur", "grain", "dust", "jpeg"])
def test_each_scan_effect_is_drawn_at_its_probability_and_changes_only_the_images_it_is_drawn_for(
    effect: str,
) -> None:
    from models.training.scan_augment import EFFECTS, ScanEffects, scan_like

    l = _lab_crops(600, 64, seed=1)[:, :1]
    only = ScanEffects(**{name: (0.3 if name == effect else 0.0) for name in EFFECTS})
    out, applied = scan_like(l, only, torch.Generator().manual_seed(7))
    assert applied[effect].float().mean().item() == pytest.approx(0.3, abs=0.06)
    assert not any(applied[name].any() for name in EFFECTS if name != effect)
    changed = (out - l).abs().amax(dim=(1, 2, 3)) > 0.5
    assert not changed[~applied[effect]].any()
    assert changed[applied[effect]].float().mean().item() > 0.8
    assert out.min() >= 0.0 and out.max() <= 100.0


def test_scan_effects_scaled_by_a_share_are_drawn_that_much_less_often() -> None:
    from models.training.scan_augment import EFFECTS, ScanEffects

    half = ScanEffects().scaled(0.5)
    assert all(half.probability(e) == pytest.approx(ScanEffects().probability(e) / 2) for e in EFFECTS)
    assert ScanEffects(grain=0.8).scaled(2.0).grain == 1.0


def test_named_sources_get_their_share_of_draws_and_the_rest_go_by_size() -> None:
    from models.training.source_sampling import parse_shares, sampling_probabilities

    source = np.array([0] * 100 + [1] * 10 + [2] * 890)
    probabilities = sampling_probabilities(source, ["a", "people", "c"], parse_shares(["people=0.3"]))
    per_source = [probabilities[source == i].sum() for i in range(3)]
    assert per_source == pytest.approx([0.7 * 100 / 990, 0.3, 0.7 * 890 / 990])
    assert np.unique(probabilities[source == 1]).size == 1
    with pytest.raises(ValueError):
        sampling_probabilities(source, ["a", "people", "c"], {"nobody": 0.1})
    with pytest.raises(ValueError):
        parse_shares(["a=0.6", "c=0.5"])


def test_a_shipped_onnx_network_trains_in_torch_and_its_decoder_is_written_back(tmp_path: Path) -> None:
    import onnxruntime as ort

    from models.onnx_head import annealed_mean
    from models.training.onnx_weights import OnnxNetwork

    shipped = Path(__file__).resolve().parents[1] / "models" / "colorize-lite"
    network = OnnxNetwork.load(shipped)
    trainable = network.train_only("decoder")
    frozen = [n for n, w in network.module.named_weights().items() if not w.requires_grad]
    assert trainable and all("decoder" in n or n.startswith("onnx::") for n in network.trainable())
    assert any(n.startswith(("encoder", "onnx::")) for n in frozen)
    l = torch.rand(1, 1, 64, 96, generator=torch.Generator().manual_seed(0)) * 100 - 50
    network.module(l).logsumexp(dim=1).mean().backward()
    assert all(w.grad is not None for w in trainable)
    assert all(w.grad is None for w in network.module.named_weights().values() if not w.requires_grad)

    with torch.no_grad():
        for weight in trainable:
            weight.add_(0.01 * torch.randn(weight.shape, generator=torch.Generator().manual_seed(1)))
        logits = network.module(l)[0].numpy()
    network.write_onnx(tmp_path / "model.onnx", network.trainable())
    session = ort.InferenceSession(str(tmp_path / "model.onnx"))
    (ab,) = session.run(["ab"], {"l": l.numpy(), "inv_temperature": np.array([1 / 0.8], np.float32)})
    np.testing.assert_allclose(ab[0], annealed_mean(logits, ab_bins(), 0.8), atol=1e-3)
    shipped_session = ort.InferenceSession(str(shipped / "model.onnx"))
    (before,) = shipped_session.run(["ab"], {"l": l.numpy(), "inv_temperature": np.array([1 / 0.8], np.float32)})
    assert np.abs(ab - before).max() > 0.1
    import onnx

    written = {i.name: i for i in onnx.load(str(tmp_path / "model.onnx")).graph.initializer}
    for initialiser in network.proto.graph.initializer:
        if initialiser.name in frozen:
            assert written[initialiser.name].SerializeToString() == initialiser.SerializeToString()


def test_the_encoder_learns_beside_the_decoder_at_its_share_of_the_rate() -> None:
    from models.training.finetune_onnx import parse_part_rates
    from models.training.onnx_weights import OnnxNetwork

    network = OnnxNetwork.load(Path(__file__).resolve().parents[1] / "models" / "colorize-lite")
    groups = network.train_parts(parse_part_rates(["decoder", "encoder=0.2"]))
    assert [group["lr_scale"] for group in groups] == [1.0, 0.2]
    decoder, encoder = ({id(w) for w in group["params"]} for group in groups)
    assert decoder and encoder and not decoder & encoder
    learning = {id(w) for w in network.module.named_weights().values() if w.requires_grad}
    assert learning == decoder | encoder
    assert network.train_only("decoder") and not any(
        w.requires_grad for w in network.module.named_weights().values() if id(w) in encoder
    )
    with pytest.raises(ValueError):
        parse_part_rates(["encoder=0"])


def test_a_fine_tuning_run_with_the_semantic_term_logs_it_and_keeps_its_last_weights(tmp_path: Path) -> None:
    from models.training import finetune_onnx

    photos = tmp_path / "photos"
    photos.mkdir()
    for source in ("people", "streets"):
        synthetic_photos(photos / source, 2)
    run = tmp_path / "run"
    args = ["--model", str(Path(__file__).resolve().parents[1] / "models" / "colorize-lite"), "--data", str(photos)]
    args += ["--val", str(photos), "--out", str(run), "--minutes", "0.01", "--eval-minutes", "0", "--size", "64"]
    args += ["--source-size", "64", "--batch-size", "2", "--val-per-source", "1", "--share", "people=0.5"]
    args += ["--train", "decoder", "--semantic-weight", "0.5"]
    finetune_onnx.train(finetune_onnx.parse_args(args))
    trained = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    semantic = [record["semantic_loss"] for record in trained if "semantic_loss" in record]
    assert semantic and all(value > 0 for value in semantic)
    last, kept = torch.load(run / "last.pt"), torch.load(run / "weights.pt")
    assert last.keys() == kept.keys()


def test_the_selection_score_is_not_won_by_painting_one_source_over() -> None:
    from models.training.selection import SourceScore

    modest = SourceScore({"ccp": 0.2, "intel": 0.4}, 75.0, 2.0, 0.9)
    washed = SourceScore({"ccp": -3.0, "intel": 0.6}, 79.0, 6.0, 1.3)
    assert modest.value(auc_weight=0.2) > washed.value(auc_weight=0.2)
    assert modest.record()["psnr_gain_ccp"] == 0.2


def test_the_photos_a_run_selects_by_are_packed_by_source_and_select_the_same(tmp_path: Path) -> None:
    from models.training.selection import main as pack_selection
    from models.training.selection import spread_over_sources

    photos = tmp_path / "val"
    photos.mkdir()
    for source in ("faces", "streets", "scenes"):
        synthetic_photos(photos / source, 5)
    pack_selection([str(photos), str(tmp_path / "pack"), "--per-source", "2"])
    packed = spread_over_sources(tmp_path / "pack", 2)
    chosen = spread_over_sources(photos, 2)
    assert len(packed) == 6
    assert [p.relative_to(tmp_path / "pack") for p in packed] == [p.relative_to(photos) for p in chosen]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(packed, chosen))


def test_lab_to_rgb_in_torch_agrees_with_opencv_and_has_finite_gradients() -> None:
    from models.training.semantic import lab_to_rgb

    rng = np.random.default_rng(3)
    rgb = rng.uniform(0, 1, (1, 40, 40, 3)).astype(np.float32)
    rgb[0, :4] = 0.0  # black, where the gamma curve's slope is infinite
    lab = cv2.cvtColor(rgb[0], cv2.COLOR_RGB2Lab)
    l = torch.from_numpy(lab[None, ..., :1]).permute(0, 3, 1, 2)
    ab = torch.from_numpy(lab[None, ..., 1:]).permute(0, 3, 1, 2).requires_grad_(True)
    back = lab_to_rgb(l, ab)
    np.testing.assert_allclose(
        back[0].permute(1, 2, 0).detach().numpy(), rgb[0], atol=4e-3
    )  # OpenCV differs by under 1/250 at the dark end
    back.sum().backward()
    assert ab.grad is not None and torch.isfinite(ab.grad).all()


def test_the_semantic_term_is_zero_for_the_true_colours_and_teaches_the_logits_only() -> None:
    from models.training.semantic import SemanticTerm

    torch.manual_seed(0)
    classifier = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 5),
    )
    term = SemanticTerm(classifier)
    bins = torch.from_numpy(ab_bins().copy()).float()
    true_bin, far_bin = int(np.argmax(ab_bins()[:, 1])), int(np.argmin(ab_bins()[:, 1]))  # yellowest, bluest
    l_centred = torch.rand(2, 1, 32, 32) * 60 - 30
    target = bins[true_bin].view(1, 2, 1, 1).expand(2, 2, 8, 8)

    def logits_at(index: int) -> torch.Tensor:
        logits = torch.full((2, len(bins), 8, 8), -30.0)
        logits[:, index] = 30.0
        return logits.requires_grad_(True)

    right = term(l_centred, logits_at(true_bin), target)
    wrong_logits = logits_at(far_bin)
    wrong = term(l_centred, wrong_logits, target)
    assert float(right) == pytest.approx(0.0, abs=1e-5)
    assert float(wrong) > 1e-3
    wrong.backward()
    assert wrong_logits.grad is not None and wrong_logits.grad.abs().sum() > 0
    assert all(p.grad is None for p in term.classifier.parameters())
