"""The frozen base network's stride-4 features of training photos, computed once.

The hint branch enters after the base network's last decoder layer, and the base is frozen,
so what the base computes for a photo never changes during training: one pass of ONNX
Runtime over each photo stores its features (float16) beside the photo's true ab (int8,
rounded), and training then runs only the small branch. On a CPU that is what makes
training the branch feasible at all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnx
from onnx import helper

from models.onnx_head import head_logits_name
from models.training.dataset import image_files, square_crop

BATCH = 16


@dataclass(frozen=True)
class BaseClassifier:
    """Where the base graph's classifier reads its features, and its 1x1 weights."""

    features: str
    weight: np.ndarray  # (313, C, 1, 1)
    bias: np.ndarray  # (313,)


def base_classifier(model: onnx.ModelProto) -> BaseClassifier:
    """The 1x1 convolution that makes the base graph's logits, found from its decoding head."""
    logits = head_logits_name(model)
    node = next(n for n in model.graph.node if logits in n.output)
    if node.op_type != "Conv" or len(node.input) != 3:
        raise ValueError(f"the logits of this graph come from a {node.op_type}, not a convolution with bias")
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    return BaseClassifier(node.input[0], weights[node.input[1]], weights[node.input[2]])


def feature_session(base: Path, threads: int) -> tuple[object, str]:
    """An ONNX Runtime session of the base graph that also outputs its classifier's features."""
    import onnxruntime as ort

    model = onnx.load(str(base))
    features = base_classifier(model).features
    model.graph.output.append(helper.make_tensor_value_info(features, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]), features


def chosen_files(root: Path, limit: int, seed: int) -> list[Path]:
    """``limit`` photos drawn at random from every folder under ``root`` (all of them when 0)."""
    files = image_files(root)
    if limit and limit < len(files):
        picked = np.random.default_rng(seed).choice(len(files), limit, replace=False)
        files = [files[i] for i in sorted(picked)]
    return files


def build_cache(base: Path, root: Path, size: int, limit: int, threads: int, seed: int) -> dict[str, np.ndarray]:
    """Features (N, C, size/4, size/4) float16 and true ab (N, 2, size, size) int8 of square crops."""
    session, features_name = feature_session(base, threads)
    files = chosen_files(root, limit, seed)
    features: list[np.ndarray] = []
    abs_: list[np.ndarray] = []
    started = time.monotonic()
    for start in range(0, len(files), BATCH):
        crops = [c for c in (square_crop(p, size) for p in files[start : start + BATCH]) if c is not None]
        lab = np.stack([cv2.cvtColor(c.astype(np.float32) / 255.0, cv2.COLOR_BGR2Lab) for c in crops])
        l_input = (lab[:, None, :, :, 0] - 50.0).astype(np.float32)
        inv_t = np.ones(len(crops), np.float32)
        (feats,) = session.run([features_name], {"l": l_input, "inv_temperature": inv_t})  # type: ignore[attr-defined]
        features.append(feats.astype(np.float16))
        abs_.append(np.clip(np.rint(lab[..., 1:]), -128, 127).astype(np.int8).transpose(0, 3, 1, 2))
        if start // BATCH % 50 == 0:
            print(f"cached {start + len(crops)}/{len(files)} photos in {time.monotonic() - started:.0f}s", flush=True)
    return {"features": np.concatenate(features), "ab": np.concatenate(abs_)}


def load_or_build(
    path: Path, base: Path, root: Path, size: int, limit: int, threads: int, seed: int
) -> dict[str, np.ndarray]:
    """The cache at ``path``, built there first when missing."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        built = build_cache(base, root, size, limit, threads, seed)
        np.savez(path, features=built["features"], ab=built["ab"])
    with np.load(path) as cached:
        return {key: cached[key] for key in cached.files}
