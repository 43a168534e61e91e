"""Engine benchmark: inference back-ends and models side by side, in one process.

    python bench/engine.py [--seconds 5]     (needs the train extra: torch)

Prints ms per image for
  * the full ECCV16 architecture (random weights, 224x224) on ONNX Runtime, OpenCV DNN
    and PyTorch, batch 1 and 8 -- the measurement that chose ONNX Runtime;
  * the shipped default model on ONNX Runtime at its own input size and at 224;
  * ONNX Runtime thread layouts: one process with all cores vs one process per core.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.colour.model_manifests import ModelManifest, load_manifest, write_manifest
from shared.settings import Settings

# Runs the network on a batch of ``n`` random inputs; what it returns is not looked at.
Runner = Callable[[int], object]


def per_image_ms(run: Runner, batch: int, seconds: float) -> float:
    run(batch)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or done == 0:
        run(batch)
        done += batch
    return (time.perf_counter() - started) / done * 1000


def eccv16_onnx(path: Path) -> None:
    """The full ECCV16 architecture with random weights, exported like our own models."""
    import onnx
    import torch

    from models.training.export import to_onnx
    from models.training.network import ColorNet, Widths

    torch.manual_seed(0)
    onnx.save(to_onnx(ColorNet(Widths(64, 128, 256, 512, 256)).eval(), size=224), path)


def random_eccv16(directory: Path) -> ModelManifest:
    """:func:`eccv16_onnx` installed in ``directory`` as the model ``eccv16-random``."""
    directory.mkdir(parents=True, exist_ok=True)
    eccv16_onnx(directory / "model.onnx")
    return write_manifest(
        directory,
        {
            "name": "eccv16-random",
            "format": "onnx",
            "file": "model.onnx",
            "input": {"name": "l", "size": 224, "normalisation": {"subtract": 50.0, "divide": 1.0}},
            "output": {"name": "ab", "downsample": 4},
            "bins": "eccv16-313",
            "temperature": 0.38,
        },
    )


def ort_runner(path: Path, size: int, threads: int) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda n: session.run(["ab"], feeds(n, size))


def feeds(batch: int, size: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "l": rng.uniform(-50, 50, (batch, 1, size, size)).astype(np.float32),
        "inv_temperature": np.full(batch, 1 / 0.38, np.float32),
    }


def opencv_runner(path: Path, size: int, threads: int) -> Runner:
    import cv2

    cv2.setNumThreads(threads)
    net = cv2.dnn.readNetFromONNX(str(path))

    def run(n: int) -> object:
        f = feeds(n, size)
        net.setInput(f["l"], "l")
        net.setInput(f["inv_temperature"], "inv_temperature")
        return net.forward("ab")

    return run


def torch_runner(path: Path, size: int, threads: int) -> Runner:
    import onnx
    import torch
    from onnx2torch import convert

    torch.set_num_threads(threads)
    module = convert(onnx.load(str(path))).eval()

    def run(n: int) -> object:
        f = feeds(n, size)
        with torch.inference_mode():
            return module(torch.from_numpy(f["l"]), torch.from_numpy(f["inv_temperature"]))

    return run


def _process_throughput(args: tuple[str, int, float]) -> float:
    path, size, seconds = args
    return 1000 / per_image_ms(ort_runner(Path(path), size, 1), 1, seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    settings = Settings.from_env()
    default = load_manifest(settings.models_dir, settings.model)
    print(f"{cores} cores; default model {default.name} (input {default.input_size})\n")

    with tempfile.TemporaryDirectory() as tmp:
        eccv16 = Path(tmp) / "eccv16.onnx"
        eccv16_onnx(eccv16)
        rows = []
        for label, make in (("onnxruntime", ort_runner), ("opencv-dnn", opencv_runner), ("pytorch", torch_runner)):
            try:
                run = make(eccv16, 224, cores)
            except Exception as exc:  # noqa: BLE001  # a back-end that cannot load the graph is reported, not fatal
                rows.append((f"ECCV16 224 {label}", f"unavailable: {exc.__class__.__name__}: {str(exc)[:60]}", ""))
                continue
            rows.append(
                (
                    f"ECCV16 224 {label}",
                    f"{per_image_ms(run, 1, args.seconds):8.1f}",
                    f"{per_image_ms(run, 8, args.seconds):8.1f}",
                )
            )
        eccv16_ms = float(rows[0][1])
        for size in (default.input_size, 224):
            run = ort_runner(default.path, size, cores)
            rows.append(
                (
                    f"{default.name} {size} onnxruntime",
                    f"{per_image_ms(run, 1, args.seconds):8.1f}",
                    f"{per_image_ms(run, 8, args.seconds):8.1f}",
                )
            )

        print(f"{'engine':40s} {'ms/img b1':>10s} {'ms/img b8':>10s}")
        for row in rows:
            print(f"{row[0]:40s} {row[1]:>10s} {row[2]:>10s}")
        own_ms = float(rows[-2][1])
        print(
            f"\n{default.name} at {default.input_size} vs ECCV16 at 224 (onnxruntime, batch 1): {eccv16_ms / own_ms:.1f}x faster"
        )
        print(f"{default.name} at 224 vs ECCV16 at 224: {eccv16_ms / float(rows[-1][1]):.1f}x faster")

        one = 1000 / per_image_ms(ort_runner(default.path, default.input_size, cores), 1, args.seconds)
        with multiprocessing.get_context("spawn").Pool(cores) as pool:
            many = sum(pool.map(_process_throughput, [(str(default.path), default.input_size, args.seconds)] * cores))
        print(
            f"\nthread layout ({default.name}): 1 process x {cores} threads {one:.1f} img/s; "
            f"{cores} processes x 1 thread {many:.1f} img/s"
        )


if __name__ == "__main__":
    main()
