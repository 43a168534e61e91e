"""Model manifests: what is installed in ``models_dir`` and how each model is fed.

Each model lives in ``models_dir/<name>/`` with ``manifest.json`` and its ONNX file. The
manifest is the contract between whoever produced the model (training, the ECCV16 importer)
and the engine: input size and normalisation, decoding temperature, file checksum, and the
strength ``prior_alpha`` of the prior correction built into the graph's decoding head
(``models.onnx_head``; 0 when absent: no correction), and whether the model takes colour
hints (``hints``: two more inputs, ``shared.colour.hints``; false when absent) and names an
output of its 313-bin probabilities (``output.probabilities``).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.errors import ModelFileError, ModelNotFound

MANIFEST_FILE = "manifest.json"
# The model served when neither settings nor the job name one.
DEFAULT_MODEL = "colorize-lite"
# Documented range of the per-job decoding temperature (annealed mean): T -> 0 tends to the
# mode (vivid, blotchy), T = 1 is the mean (safe, washed out).
# A model is a folder of models_dir: a plain name, which also bounds what reaches the file system.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
MIN_TEMPERATURE = 0.05
MAX_TEMPERATURE = 1.0
# Range of the prior correction's strength: 0 decodes the network's (rebalanced) output as it
# is, 1 divides out all of the rebalancing, beyond that it favours common colours further.
MIN_PRIOR_ALPHA = 0.0
MAX_PRIOR_ALPHA = 2.0


@dataclass(frozen=True)
class ModelManifest:
    name: str
    directory: Path
    file: str
    sha256: str
    input_size: int
    l_subtract: float
    l_divide: float
    downsample: int
    temperature: float
    prior_alpha: float
    raw: dict[str, Any]
    hints: bool = False
    # The graph output holding the 313-bin probabilities (N, 313, h, w), where it has one.
    probabilities_output: str | None = None

    @property
    def path(self) -> Path:
        return self.directory / self.file

    def summary(self) -> dict[str, Any]:
        """What clients are shown about a model."""
        keys = ("name", "description", "licence", "training_data", "temperature", "prior_alpha")
        return {k: self.raw[k] for k in keys if k in self.raw} | {"hints": self.hints}

    def verify_file(self) -> None:
        """Raise ModelFileError unless the model file exists and matches its checksum."""
        if not self.path.is_file():
            raise ModelFileError(f"model file {self.path} is missing", model=self.name)
        digest = file_sha256(self.path)
        if digest != self.sha256:
            raise ModelFileError(
                f"model file {self.path} does not match its manifest (sha256 {digest})", model=self.name
            )


def file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def parse_manifest(directory: Path, data: dict[str, Any]) -> ModelManifest:
    try:
        norm = data["input"].get("normalisation", {})
        return ModelManifest(
            name=data["name"],
            directory=directory,
            file=data["file"],
            sha256=data["sha256"],
            input_size=int(data["input"]["size"]),
            l_subtract=float(norm.get("subtract", 50.0)),
            l_divide=float(norm.get("divide", 1.0)),
            downsample=int(data["output"].get("downsample", 4)),
            temperature=float(data["temperature"]),
            prior_alpha=checked_prior_alpha(float(data.get("prior_alpha", 0.0))),
            raw=data,
            hints=_flag(data.get("hints", False), "hints"),
            probabilities_output=data["output"].get("probabilities"),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(f"manifest in {directory} is invalid: {exc!r}") from exc


def _flag(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{key} must be true or false, not {value!r}")
    return value


def checked_prior_alpha(alpha: float) -> float:
    """``alpha`` when it is in the documented range; ValueError otherwise."""
    if not MIN_PRIOR_ALPHA <= alpha <= MAX_PRIOR_ALPHA:
        raise ValueError(f"prior_alpha must be between {MIN_PRIOR_ALPHA} and {MAX_PRIOR_ALPHA}, not {alpha}")
    return alpha


def load_manifest(models_dir: Path, name: str) -> ModelManifest:
    name = DEFAULT_MODEL if name == "default" else name
    if not MODEL_NAME.fullmatch(name):
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise ModelNotFound(f"no model named {shown!r}: model names are 1-100 letters, digits, '.', '-' or '_'")
    directory = models_dir / name
    manifest_path = directory / MANIFEST_FILE
    if not manifest_path.is_file():
        available = ", ".join(m.name for m in installed_models(models_dir)) or "none"
        raise ModelNotFound(f"model {name!r} is not installed (installed: {available})", model=name)
    try:
        data = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{manifest_path} is not valid JSON: {exc}") from exc
    return parse_manifest(directory, data)


def installed_models(models_dir: Path) -> list[ModelManifest]:
    manifests = []
    for manifest_path in sorted(models_dir.glob(f"*/{MANIFEST_FILE}")):
        try:
            manifests.append(load_manifest(models_dir, manifest_path.parent.name))
        except ModelFileError:
            continue
    return manifests


def hint_models(manifests: list[ModelManifest]) -> dict[str, str]:
    """For each model, the installed hint model built on it, name for name: one whose training
    names it as the frozen base, by the same file (its sha256). Without hints such a model
    colours exactly as its base, so a result of the base can be re-colorized with hints by it."""
    by_name = {m.name: m for m in manifests}
    twins: dict[str, str] = {}
    for manifest in manifests:
        training = manifest.raw.get("training") or {}
        base = by_name.get(str(training.get("base")))
        if manifest.hints and base is not None and not base.hints and training.get("base_sha256") == base.sha256:
            twins.setdefault(base.name, manifest.name)
    return twins


def write_manifest(directory: Path, data: dict[str, Any]) -> ModelManifest:
    """Write ``manifest.json`` for the model file already in ``directory``, filling in its sha256."""
    data = dict(data)
    data["sha256"] = file_sha256(directory / data["file"])
    (directory / MANIFEST_FILE).write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return parse_manifest(directory, data)
