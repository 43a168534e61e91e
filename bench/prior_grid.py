"""Prior correction (alpha) and temperature (T) of installed models, chosen by measurement.

    python bench/prior_grid.py ../shared/data/val --model colorize-lite --model colorize-small \
        --alpha 0 0.5 0.75 1 --temperature 0.38 0.5 0.8 [--limit N] [--judge] [--out DIR]

Prints (and writes to DIR as table.md / table.csv) ``colorize eval``'s table, per source and
over all photos, with one row per (model, alpha, T) variant beside grey. Each model's network
runs once per batch of photos; every variant decodes those logits with the NumPy reference of
the head (``models.onnx_head.annealed_mean``), its bias from the model's own ``bin_stats.npz``,
and then goes through the served colorizer, so what is measured is what a re-headed model serves.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.contact_sheets import Colorizer
from models.evaluation import evaluate, markdown, photo_files, table_rows, write_tables
from models.onnx_head import annealed_mean, head_logits_name, prior_bias
from models.prior_correction import rebalancing_weights
from models.recognition import Judge
from shared.colour.bins import ab_bins
from shared.colour.colorizer import colorize
from shared.colour.engine import Engine
from shared.colour.model_manifests import ModelManifest, load_manifest
from shared.settings import Settings


class SharedLogits:
    """One model's network without its head; remembers the logits of the last few batches."""

    def __init__(self, manifest: ModelManifest, threads: int, keep: int = 4) -> None:
        import onnxruntime as ort

        model = onnx.load(str(manifest.path))
        logits = head_logits_name(model)
        del model.graph.output[:]
        model.graph.output.append(helper.make_tensor_value_info(logits, TensorProto.FLOAT, None))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self._feeds_temperature = any(i.name == "inv_temperature" for i in self._session.get_inputs())
        self._recent: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._keep = keep

    def logits(self, l_input: np.ndarray) -> np.ndarray:
        key = hashlib.blake2b(l_input.tobytes(), digest_size=16).digest()
        if key not in self._recent:
            feeds = {"l": l_input}
            if self._feeds_temperature:
                feeds["inv_temperature"] = np.ones(len(l_input), np.float32)
            self._recent[key] = self._session.run(None, feeds)[0]
            while len(self._recent) > self._keep:
                self._recent.popitem(last=False)
        return self._recent[key]


class DecodedVariant:
    """An engine back-end that decodes shared logits with one prior bias."""

    device = "cpu"

    def __init__(self, shared: SharedLogits, bias: np.ndarray | None) -> None:
        self._shared, self._bias = shared, bias

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
        logits = self._shared.logits(feeds["l"])
        return [
            np.stack(
                [
                    annealed_mean(one, ab_bins(), 1.0 / float(t), self._bias)
                    for one, t in zip(logits, feeds["inv_temperature"])
                ]
            )
        ]


def variant_colorizers(
    settings: Settings, name: str, alphas: list[float], temperatures: list[float]
) -> dict[str, Colorizer]:
    manifest = load_manifest(settings.models_dir, name)
    shared = SharedLogits(manifest, settings.engine_threads or 1)
    weights = rebalancing_weights(manifest.directory) if any(alphas) else None
    methods: dict[str, Colorizer] = {}
    for alpha in alphas:
        bias = prior_bias(weights, alpha) if weights is not None and alpha else None
        engine = Engine(manifest, DecodedVariant(shared, bias), 0.0)
        for temperature in temperatures:

            def run(images: list[np.ndarray], engine: Engine = engine, t: float = temperature) -> list[np.ndarray]:
                return colorize(engine, images, len(images), t)

            methods[f"{manifest.name} a{alpha:g} T{temperature:g}"] = run
    return methods


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--alpha", type=float, nargs="+", default=[0.0, 0.5, 0.75, 1.0])
    parser.add_argument("--temperature", type=float, nargs="+", default=[0.38, 0.5, 0.8])
    parser.add_argument("--limit", type=int, default=0, help="an evenly spread subset of N photos")
    parser.add_argument("--judge", action="store_true", help="also the ImageNet classifier (slow on a CPU)")
    parser.add_argument("--out", type=Path, default=Path("runs/prior-grid"), help="folder of table.md and table.csv")
    args = parser.parse_args()
    settings = Settings()
    files = photo_files(args.folder, args.limit)
    methods: dict[str, Colorizer] = {"grey": lambda images: list(images)}
    for name in args.model:
        methods.update(variant_colorizers(settings, name, args.alpha, args.temperature))
    judge = Judge.load() if args.judge else None
    if isinstance(judge, str):
        print(judge, file=sys.stderr)
        judge = None
    tallies, _ = evaluate(files, args.folder, methods, judge, sheet_rows=0)
    rows = table_rows(tallies, judged=judge is not None)
    text = markdown(rows, len(files))
    write_tables(args.out, rows, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
