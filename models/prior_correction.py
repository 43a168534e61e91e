"""Re-heading an installed model: the strength of its prior correction and its temperature.

    colorize models decoding NAME --prior-alpha A [--temperature T]
    python -m models.prior_correction NAME --prior-alpha A [--temperature T]

The prior bias ``-alpha * log w`` (``models.onnx_head``) uses the model's own rebalancing
weights ``w``, kept beside it in ``bin_stats.npz`` by training. The ONNX file is rewritten
with the new bias (alpha = 0 removes it, giving back the graph as exported) and the manifest
with ``prior_alpha``, the temperature and the file's new sha256. Models without bin
statistics (the imported ECCV16 release) can only have alpha = 0.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from models.onnx_head import prior_bias, with_prior_bias
from shared.colour.engine import check_temperature
from shared.colour.model_manifests import ModelManifest, checked_prior_alpha, load_manifest, write_manifest
from shared.errors import ColorizeError, InvalidRequest, ModelFileError
from shared.settings import Settings

BIN_STATS_FILE = "bin_stats.npz"


def rebalancing_weights(directory: Path) -> np.ndarray:
    """The per-bin rebalancing weights the model in ``directory`` was trained with."""
    path = directory / BIN_STATS_FILE
    if not path.is_file():
        raise ModelFileError(
            f"{directory.name} has no {BIN_STATS_FILE}: its rebalancing weights are unknown, so its prior_alpha stays 0",
            model=directory.name,
        )
    with np.load(path) as stats:
        weights: np.ndarray = stats["weights"]
    return weights


def set_decoding(models_dir: Path, name: str, prior_alpha: float, temperature: float | None = None) -> ModelManifest:
    """Rewrite model ``name``'s head for ``prior_alpha`` and its manifest (and temperature, when given)."""
    try:
        checked_prior_alpha(prior_alpha)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from exc
    if temperature is not None:
        check_temperature(temperature)
    manifest = load_manifest(models_dir, name)
    manifest.verify_file()
    bias = prior_bias(rebalancing_weights(manifest.directory), prior_alpha) if prior_alpha else None
    model = with_prior_bias(onnx.load(str(manifest.path)), bias)
    staged = manifest.path.with_name(manifest.path.name + ".new")
    onnx.save(model, str(staged))
    os.replace(staged, manifest.path)
    return write_manifest(manifest.directory, _decoding_fields(manifest.raw, prior_alpha, temperature))


def _decoding_fields(raw: dict[str, Any], prior_alpha: float, temperature: float | None) -> dict[str, Any]:
    """The manifest with the new decoding, ``prior_alpha`` written beside ``temperature``."""
    data: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "prior_alpha":
            continue
        data[key] = temperature if key == "temperature" and temperature is not None else value
        if key == "temperature":
            data["prior_alpha"] = prior_alpha
    return data


def main(argv: Sequence[str] | None = None, settings: Settings | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="colorize models decoding",
        description="Set an installed model's prior correction (rewrites its ONNX head) and temperature.",
    )
    parser.add_argument("name", help="installed model")
    parser.add_argument("--prior-alpha", type=float, required=True, help="strength of the prior correction, 0 to 2")
    parser.add_argument("--temperature", type=float, help="default decoding temperature (unchanged when left out)")
    parser.add_argument("--models-dir", type=Path, help="where models are installed (default: settings)")
    args = parser.parse_args(argv)
    models_dir = args.models_dir or (settings or Settings.from_env_or_exit()).models_dir
    try:
        manifest = set_decoding(models_dir, args.name, args.prior_alpha, args.temperature)
    except ColorizeError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    print(
        f"{manifest.name}: prior_alpha {manifest.prior_alpha}, temperature {manifest.temperature} "
        f"(sha256 {manifest.sha256})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
