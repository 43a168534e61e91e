"""Fetching and installing the released ECCV16 weights as a model of this project.

``install_eccv16`` takes the weights and network definition from the published addresses,
from a mirror that holds both under their published names, or from files already on disk
(air-gapped machines), and converts them with ``models.eccv16.convert_caffemodel``.

Downloads resume where an interrupted one stopped (HTTP Range on the ``.part`` file kept in
``models_dir/.downloads``). The weights file is checked against the SHA-1 published with
OpenCV's test data whenever it comes from a published address or a mirror, and always by
structure: every layer and blob shape must match the network before anything is written.
The manifest records the SHA-256 of what was installed from.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.eccv16 import convert_caffemodel
from models.eccv16_layers import ECCV16_LAYERS, LayerSpec, blob_shapes
from shared.colour.model_manifests import ModelManifest
from shared.errors import ColorizeError, ModelDownloadFailed, ModelFileError
from shared.settings import Settings

CAFFEMODEL_NAME = "colorization_release_v2.caffemodel"
PROTOTXT_NAME = "colorization_deploy_v2.prototxt"
# The address the authors publish, then the copy OpenCV serves its test data from.
CAFFEMODEL_URLS = (
    "http://eecs.berkeley.edu/~rich.zhang/projects/2016_colorization/files/demo_v2/" + CAFFEMODEL_NAME,
    "https://dl.opencv.org/models/" + CAFFEMODEL_NAME,
)
# SHA-1 of the release as listed for it in opencv_extra (testdata/dnn/download_models.py).
CAFFEMODEL_SHA1 = "21e61293a3fa6747308171c11b6dd18a68a26e7f"
# The authors' repository at a fixed commit, so the definition cannot change under us.
PROTOTXT_URL = (
    "https://raw.githubusercontent.com/richzhang/colorization/"
    "4aa459f03cedd5678524ac3429cd89270dcf5290/models/" + PROTOTXT_NAME
)
PROJECT_URL = "https://richzhang.github.io/colorization/"
PAPER = "Zhang, Isola, Efros. Colorful Image Colorization. ECCV 2016"

DOWNLOADS_DIR = ".downloads"
CHUNK_BYTES = 1024 * 1024
ATTEMPTS = 4  # per address; each later attempt resumes where the previous one stopped

Progress = Callable[[str, int, "int | None"], None]  # (file name, bytes so far, total or None)


@dataclass(frozen=True)
class Download:
    path: Path
    url: str
    size: int
    sha1: str
    sha256: str


def is_url(location: str | Path) -> bool:
    return isinstance(location, str) and re.match(r"^https?://", location, re.IGNORECASE) is not None


def _content_range_total(header: str | None) -> int | None:
    """Total size from ``Content-Range: bytes a-b/total`` (None when unknown)."""
    match = re.match(r"^bytes\s+(?:\d+-\d+|\*)/(\d+)$", (header or "").strip())
    return int(match.group(1)) if match else None


def _content_range_start(header: str | None) -> int | None:
    match = re.match(r"^bytes\s+(\d+)-\d+/", (header or "").strip())
    return int(match.group(1)) if match else None


def _fetch_into(url: str, part: Path, timeout_s: float, progress: Progress | None) -> bool:
    """Append the rest of ``url`` to ``part``; True once ``part`` holds the whole file."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            total = _content_range_total(exc.headers.get("Content-Range"))
            exc.close()
            if total == offset:
                return True
            part.unlink()  # the partial file is longer than the resource: start again
            return False
        raise
    with response:
        if response.status == 206:
            if _content_range_start(response.headers.get("Content-Range")) != offset:
                part.unlink(missing_ok=True)  # a range we did not ask for: start again
                return False
            total = _content_range_total(response.headers.get("Content-Range"))
            mode = "ab"
        else:
            # The server sent the whole file (it ignores Range, or this is the first request).
            offset = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            mode = "wb"
        with part.open(mode) as out:
            received = offset
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                received += len(chunk)
                if progress:
                    progress(part.name.removesuffix(".part"), received, total)
    return total is None or received == total


def _digests(path: Path) -> tuple[str, str]:
    sha1, sha256 = hashlib.sha1(), hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK_BYTES):
            sha1.update(block)
            sha256.update(block)
    return sha1.hexdigest(), sha256.hexdigest()


def download(
    url: str,
    dest: Path,
    *,
    sha1: str | None = None,
    min_size: int = 0,
    attempts: int = ATTEMPTS,
    timeout_s: float = 60.0,
    progress: Progress | None = None,
) -> Download:
    """Download ``url`` to ``dest``, resuming from ``dest.part`` left by an earlier try.

    Raises ModelDownloadFailed when the file cannot be fetched in ``attempts`` tries (the
    partial file stays for the next run) and ModelFileError when what arrived is smaller
    than ``min_size`` or its SHA-1 differs from ``sha1`` (then the partial file is removed).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    problem: Exception | None = None
    for _ in range(attempts):
        try:
            if _fetch_into(url, part, timeout_s, progress):
                break
            problem = ConnectionError("the connection closed before the whole file arrived")
        except urllib.error.HTTPError as exc:
            if exc.code < 500 and exc.code not in (408, 429):
                raise ModelDownloadFailed(f"{url}: HTTP {exc.code} {exc.reason}", url=url) from exc
            problem = exc
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            problem = exc
    else:
        held = part.stat().st_size if part.exists() else 0
        raise ModelDownloadFailed(
            f"could not download {url} ({problem}); {held} bytes kept, run again to resume", url=url
        )
    size = part.stat().st_size
    digest_sha1, digest_sha256 = _digests(part)
    if size < min_size or (sha1 is not None and digest_sha1 != sha1):
        part.unlink()
        expected = f"SHA-1 {sha1}" if sha1 else f"at least {min_size} bytes"
        raise ModelFileError(
            f"{url} sent a different file ({size} bytes, SHA-1 {digest_sha1}; expected {expected})", url=url
        )
    part.replace(dest)
    return Download(dest, url, size, digest_sha1, digest_sha256)


def _fetch_first(
    urls: Sequence[str], dest: Path, *, sha1: str | None, min_size: int, progress: Progress | None, timeout_s: float
) -> Download:
    failures: list[ColorizeError] = []
    for url in urls:
        try:
            return download(url, dest, sha1=sha1, min_size=min_size, progress=progress, timeout_s=timeout_s)
        except (ModelDownloadFailed, ModelFileError) as exc:
            failures.append(exc)
    kind = ModelFileError if any(isinstance(f, ModelFileError) for f in failures) else ModelDownloadFailed
    raise kind(
        "; ".join(f.message for f in failures) + " (use --caffemodel/--prototxt with local files, or --mirror)",
        urls=list(urls),
    )


def _min_caffemodel_bytes(layers: Sequence[LayerSpec]) -> int:
    """Four bytes per weight: a file smaller than this cannot hold the network."""
    return 4 * sum(int(np.prod(shape)) for shapes in blob_shapes(layers).values() for shape in shapes[:2])


def _local(location: str | Path, what: str) -> Path:
    path = Path(location).expanduser()
    if not path.is_file():
        raise ModelFileError(f"{what} {path} does not exist", path=str(path))
    return path


def _mirror_url(mirror: str, file_name: str) -> str:
    return mirror.rstrip("/") + "/" + file_name


def install_eccv16(
    models_dir: Path,
    source: str | Path | None = None,
    prototxt: str | Path | None = None,
    mirror: str | None = None,
    *,
    name: str = "eccv16",
    progress: Progress | None = None,
    timeout_s: float = 60.0,
    layers: Sequence[LayerSpec] = ECCV16_LAYERS,
) -> ModelManifest:
    """Install the released ECCV16 weights as ``models_dir/<name>/``.

    ``source``: the weights, as a local path or an http(s) URL; None fetches the published
    file (from ``mirror`` when given: a base URL serving both files under their published
    names). ``prototxt``: the network definition, likewise; None takes it from the mirror or
    the authors' repository at a pinned commit. Downloaded files are removed once installed;
    interrupted downloads resume on the next call.
    """
    models_dir = Path(models_dir)
    downloads = models_dir / DOWNLOADS_DIR
    fetched: list[Path] = []
    provenance: dict[str, object] = {"paper": PAPER, "project_url": PROJECT_URL, "published_sha1": CAFFEMODEL_SHA1}

    if source is None or is_url(source):
        published = source is None
        if source is None:
            urls = [_mirror_url(mirror, CAFFEMODEL_NAME)] if mirror else list(CAFFEMODEL_URLS)
        else:
            urls = [str(source)]
        weights = _fetch_first(
            urls,
            downloads / CAFFEMODEL_NAME,
            sha1=CAFFEMODEL_SHA1 if published else None,
            min_size=_min_caffemodel_bytes(layers),
            progress=progress,
            timeout_s=timeout_s,
        )
        fetched.append(weights.path)
        caffemodel_path, weights_sha1 = weights.path, weights.sha1
        provenance["source_url"] = weights.url
    else:
        caffemodel_path = _local(source, "weights file")
        weights_sha1, _ = _digests(caffemodel_path)
        provenance["source_path"] = str(caffemodel_path.resolve())
    provenance["caffemodel_sha1"] = weights_sha1
    provenance["matches_published_release"] = weights_sha1 == CAFFEMODEL_SHA1

    if prototxt is None or is_url(prototxt):
        if prototxt is None:
            url = _mirror_url(mirror, PROTOTXT_NAME) if mirror else PROTOTXT_URL
        else:
            url = str(prototxt)
        definition = _fetch_first(
            [url], downloads / PROTOTXT_NAME, sha1=None, min_size=0, progress=progress, timeout_s=timeout_s
        )
        fetched.append(definition.path)
        prototxt_path = definition.path
        provenance["prototxt_url"] = definition.url
    else:
        prototxt_path = _local(prototxt, "network definition")
        provenance["prototxt_path"] = str(prototxt_path.resolve())

    manifest = convert_caffemodel(
        caffemodel_path, prototxt_path, models_dir, name, provenance=provenance, layers=layers
    )
    for path in fetched:
        path.unlink(missing_ok=True)
    return manifest


class _ProgressPrinter:
    """Prints one line per tenth of each file to stderr."""

    def __init__(self) -> None:
        self._shown: dict[str, int] = {}

    def __call__(self, file_name: str, done: int, total: int | None) -> None:
        step = done * 10 // total if total else done // (16 * CHUNK_BYTES)
        if self._shown.get(file_name) != step:
            self._shown[file_name] = step
            amount = f"{done * 100 // total}%" if total else f"{done // CHUNK_BYTES} MiB"
            print(f"{file_name}: {amount}", file=sys.stderr)


def main(argv: Sequence[str] | None = None, settings: Settings | None = None) -> int:
    """``colorize models install eccv16 [--caffemodel P] [--prototxt P] [--mirror URL]``."""
    parser = argparse.ArgumentParser(
        prog="colorize models install eccv16",
        description="Install the released ECCV16 weights (Zhang et al.) as a model.",
    )
    parser.add_argument("--caffemodel", help="weights file already downloaded, or its URL")
    parser.add_argument("--prototxt", help="network definition file already downloaded, or its URL")
    parser.add_argument("--mirror", help="base URL serving both files under their published names")
    parser.add_argument("--models-dir", type=Path, help="where models are installed (default: settings)")
    parser.add_argument("--name", default="eccv16", help="name of the installed model")
    args = parser.parse_args(argv)
    models_dir = args.models_dir or (settings or Settings.from_env_or_exit()).models_dir
    try:
        manifest = install_eccv16(
            models_dir, args.caffemodel, args.prototxt, args.mirror, name=args.name, progress=_ProgressPrinter()
        )
    except ColorizeError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    print(f"installed {manifest.name} in {manifest.directory} (sha256 {manifest.sha256})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
