"""Inference engine: L at the model's input size in, annealed-mean ab out.

ONNX Runtime runs every model on the CPU and, where ``onnxruntime-gpu`` is installed, on
CUDA. Its one fallback: on a CUDA machine whose ONNX Runtime has no CUDA provider, PyTorch
runs the same ONNX graph (converted by onnx2torch). Both stay in float32 (TF32 convolutions
on recent GPUs): in float16 the trained network's activations overflow and colours drift
(mean ab error 12 against the CPU path, measured on an H100).

A hint model (``ModelManifest.hints``) always gets the two hint planes of
``shared.colour.hints``, zeros for an image without hints; any other model refuses hints.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from shared.colour.hint_planes import hint_planes
from shared.colour.hints import Hint
from shared.colour.model_manifests import MAX_TEMPERATURE, MIN_TEMPERATURE, ModelManifest
from shared.errors import HintsNotSupported, InvalidRequest

log = logging.getLogger(__name__)


class _Backend(Protocol):
    device: str

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]: ...


class Engine:
    """One loaded model on one device. Not thread-safe across concurrent ``predict_ab`` calls."""

    def __init__(self, manifest: ModelManifest, backend: _Backend, load_seconds: float) -> None:
        self.manifest = manifest
        self._backend = backend
        self.load_seconds = load_seconds

    @classmethod
    def load(cls, manifest: ModelManifest, device: str = "auto", threads: int = 0) -> Engine:
        """Load ``manifest``'s model on ``device`` (auto | cpu | cuda), checking its checksum first."""
        started = time.perf_counter()
        manifest.verify_file()
        backend = _select_backend(manifest, device, threads)
        elapsed = time.perf_counter() - started
        log.info("model %s loaded on %s in %.2fs", manifest.name, backend.device, elapsed)
        return cls(manifest, backend, elapsed)

    @property
    def device(self) -> str:
        return self._backend.device

    @property
    def input_size(self) -> int:
        return self.manifest.input_size

    def predict_ab(
        self,
        lightness: np.ndarray,
        temperature: float | None = None,
        hints: Sequence[Sequence[Hint]] | None = None,
        aspects: Sequence[float] | None = None,
    ) -> np.ndarray:
        """(N, S, S) float32 L in [0, 100] at the input size -> (N, S/d, S/d, 2) float32 ab.

        ``hints``: one list per image (empty: none); ``aspects``: each photo's width over its
        height, which shapes hints with a radius (square photos when not given).
        """
        (ab,) = self._run(lightness, temperature, hints, aspects, ["ab"])
        return ab.transpose(0, 2, 3, 1)

    def predict_probabilities(
        self,
        lightness: np.ndarray,
        hints: Sequence[Sequence[Hint]] | None = None,
        aspects: Sequence[float] | None = None,
    ) -> np.ndarray:
        """(N, S, S) L -> (N, 313, S/d, S/d) the network's bin probabilities (at T = 1, prior
        correction included); HintsNotSupported for a model whose graph does not output them."""
        output = self.manifest.probabilities_output
        if output is None:
            raise HintsNotSupported(
                f"model {self.manifest.name!r} does not offer likely colours", model=self.manifest.name
            )
        (probabilities,) = self._run(lightness, 1.0, hints, aspects, [output])
        return probabilities

    def _run(
        self,
        lightness: np.ndarray,
        temperature: float | None,
        hints: Sequence[Sequence[Hint]] | None,
        aspects: Sequence[float] | None,
        outputs: list[str],
    ) -> list[np.ndarray]:
        temperature = self.manifest.temperature if temperature is None else temperature
        check_temperature(temperature)
        m = self.manifest
        l_input = ((lightness.astype(np.float32) - m.l_subtract) / m.l_divide)[:, None, :, :]
        feeds = {
            "l": np.ascontiguousarray(l_input),
            "inv_temperature": np.full(len(lightness), 1.0 / temperature, dtype=np.float32),
        }
        feeds.update(self._hint_feeds(len(lightness), hints, aspects))
        return self._backend.run(feeds, outputs)

    def _hint_feeds(
        self, count: int, hints: Sequence[Sequence[Hint]] | None, aspects: Sequence[float] | None
    ) -> dict[str, np.ndarray]:
        """The hint planes a hint model reads (zeros for images without hints); none for another model."""
        per_image = list(hints) if hints is not None else [[] for _ in range(count)]
        if len(per_image) != count:
            raise ValueError(f"{len(per_image)} lists of hints for {count} images")
        if not self.manifest.hints:
            if any(per_image):
                raise HintsNotSupported(f"model {self.manifest.name!r} takes no colour hints", model=self.manifest.name)
            return {}
        size = self.input_size
        ratios = list(aspects) if aspects is not None else [1.0] * count
        planes = [hint_planes(image_hints, size, ratio) for image_hints, ratio in zip(per_image, ratios)]
        return {
            "hint_ab": np.stack([ab for ab, _ in planes]),
            "hint_mask": np.stack([mask for _, mask in planes]),
        }


def check_temperature(temperature: float) -> None:
    if not MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE:
        raise InvalidRequest(f"temperature must be between {MIN_TEMPERATURE} and {MAX_TEMPERATURE}, not {temperature}")


def _select_backend(manifest: ModelManifest, device: str, threads: int) -> _Backend:
    import onnxruntime as ort

    if device in ("auto", "cuda"):
        if "CUDAExecutionProvider" in ort.get_available_providers():
            return _OrtBackend(manifest, threads, cuda=True)
        if _torch_cuda_available():
            log.warning("onnxruntime has no CUDA provider; running %s with PyTorch on CUDA", manifest.name)
            return _TorchCudaBackend(manifest)
        log.warning("no CUDA device usable (device=%s); running %s on the CPU", device, manifest.name)
    return _OrtBackend(manifest, threads, cuda=False)


def _torch_cuda_available() -> bool:
    # Importing torch costs seconds per worker process: only do it where the fallback is
    # installed and an NVIDIA driver is present.
    if importlib.util.find_spec("onnx2torch") is None or not Path("/proc/driver/nvidia").exists():
        return False
    import torch

    return bool(torch.cuda.is_available())


class _OrtBackend:
    def __init__(self, manifest: ModelManifest, threads: int, cuda: bool) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # One intra-op pool sized to the cores this process may use; inter-op parallelism
        # gains nothing on a sequential conv stack and only adds contention.
        options.intra_op_num_threads = threads or (os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
        self._session = ort.InferenceSession(str(manifest.path), options, providers=providers)
        self.device = "cuda" if cuda else "cpu"

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
        results: list[np.ndarray] = self._session.run(outputs, feeds)
        return results


class _TorchCudaBackend:
    def __init__(self, manifest: ModelManifest) -> None:
        import onnx
        import torch
        from onnx2torch import convert

        self._torch = torch
        graph = onnx.load(str(manifest.path))
        # The converted module takes the graph's inputs in order and returns its outputs in order.
        self._inputs = [value.name for value in graph.graph.input]
        self._outputs = [value.name for value in graph.graph.output]
        self._module = convert(graph).eval().cuda()
        self.device = "cuda"

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            results = self._module(*(torch.from_numpy(feeds[name]).cuda() for name in self._inputs))
            if len(self._outputs) == 1:
                results = (results,)
            by_name = dict(zip(self._outputs, results))
            return [by_name[name].cpu().numpy() for name in outputs]
