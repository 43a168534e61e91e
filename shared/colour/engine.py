"""Inference engine: L at the model's input size in, annealed-mean ab out.

ONNX Runtime runs every model on the CPU and, where ``onnxruntime-gpu`` is installed, on
CUDA. Its one fallback: on a CUDA machine whose ONNX Runtime has no CUDA provider, PyTorch
runs the same ONNX graph (converted by onnx2torch). Both stay in float32 (TF32 convolutions
on recent GPUs): in float16 the trained network's activations overflow and colours drift
(mean ab error 12 against the CPU path, measured on an H100).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from pathlib import Path
from typing import Protocol

import numpy as np

from shared.colour.model_manifests import MAX_TEMPERATURE, MIN_TEMPERATURE, ModelManifest
from shared.errors import InvalidRequest

log = logging.getLogger(__name__)


class _Backend(Protocol):
    device: str

    def run(self, l_input: np.ndarray, inv_temperature: np.ndarray) -> np.ndarray: ...


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

    def predict_ab(self, lightness: np.ndarray, temperature: float | None = None) -> np.ndarray:
        """(N, S, S) float32 L in [0, 100] at the input size -> (N, S/d, S/d, 2) float32 ab."""
        temperature = self.manifest.temperature if temperature is None else temperature
        check_temperature(temperature)
        m = self.manifest
        l_input = ((lightness.astype(np.float32) - m.l_subtract) / m.l_divide)[:, None, :, :]
        inv_temperature = np.full(len(lightness), 1.0 / temperature, dtype=np.float32)
        ab = self._backend.run(np.ascontiguousarray(l_input), inv_temperature)
        return ab.transpose(0, 2, 3, 1)


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

    def run(self, l_input: np.ndarray, inv_temperature: np.ndarray) -> np.ndarray:
        outputs: list[np.ndarray] = self._session.run(["ab"], {"l": l_input, "inv_temperature": inv_temperature})
        (ab,) = outputs
        return ab


class _TorchCudaBackend:
    def __init__(self, manifest: ModelManifest) -> None:
        import onnx
        import torch
        from onnx2torch import convert

        self._torch = torch
        self._module = convert(onnx.load(str(manifest.path))).eval().cuda()
        self.device = "cuda"

    def run(self, l_input: np.ndarray, inv_temperature: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            l_gpu = torch.from_numpy(l_input).cuda()
            inv_t = torch.from_numpy(inv_temperature).cuda()
            ab: np.ndarray = self._module(l_gpu, inv_t).cpu().numpy()
            return ab
