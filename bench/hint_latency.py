"""How long a single 1 MP photo with colour hints takes through ``Prefer: wait``, worker idle.

    python -m bench.hint_latency [--samples 10] [--hint-model NAME] [--hints 8]   (needs the test extra)

Starts the local stack (embedded Redis and SeaweedFS, the API under gunicorn, one Celery
worker) on a temporary data directory whose models directory holds the installed models and,
where no model that takes hints is installed, the tiny hint-taking test model
(``tests/model_builder.py``: its network costs next to nothing, so its figure is the service's
own path). Then, one request at a time with the worker idle between them, it prints p50 / max
of the ``POST /v1/jobs`` answered ``201`` (the photo sent in the form, hints beside it) and of
the result's download after it, for: the hint model with hints, the same without, and the
default model without hints (its network's cost at this size).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import cv2
import numpy as np

from bench.service import sample_photos
from cli.embedded_services import free_port
from cli.local_stack import LocalStack
from shared.colour.model_manifests import installed_models, load_manifest
from shared.settings import Settings

TEST_HINT_MODEL = "test-hints"
SIDE = (1152, 864)  # about 1 MP, 4:3


def photo_jpeg() -> bytes:
    photo = cv2.resize(sample_photos()[0], SIDE, interpolation=cv2.INTER_CUBIC)
    grey = cv2.cvtColor(cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    return bytes(cv2.imencode(".jpg", grey, [cv2.IMWRITE_JPEG_QUALITY, 92])[1])


def random_hints(count: int, seed: int = 0) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    return [
        {"x": round(float(x), 4), "y": round(float(y), 4), "color": "#" + bytes(rng.integers(0, 256, 3).tolist()).hex()}
        for x, y in rng.uniform(0.05, 0.95, (count, 2))
    ]


def waited_job(api: str, data: bytes, fields: dict[str, str]) -> tuple[float, float]:
    """Seconds to the 201 of ``Prefer: wait`` and to the result's bytes after it."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="photo.jpg"\r\n\r\n'.encode()
    body = b"".join(parts) + head + data + f"\r\n--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "Prefer": "wait=30"}
    started = time.perf_counter()
    with urllib.request.urlopen(urllib.request.Request(f"{api}/v1/jobs", body, headers), timeout=60) as response:
        status, job = response.status, json.loads(response.read())
    answered = time.perf_counter() - started
    if status != 201 or job["status"] != "succeeded":
        raise RuntimeError(f"the job was not done within the wait: {status} {job['status']}")
    with urllib.request.urlopen(f"{api}{job['links']['result']}", timeout=60) as response:
        response.read()
    return answered, time.perf_counter() - started


def measure(api: str, label: str, data: bytes, fields: dict[str, str], samples: int) -> None:
    waited_job(api, data, fields)  # the model loaded, connections open
    answers, downloads = [], []
    for _ in range(samples):
        time.sleep(0.5)  # the worker idle again, as a person's next click finds it
        answered, downloaded = waited_job(api, data, fields)
        answers.append(answered)
        downloads.append(downloaded)
    print(
        f"{label:<44} 201 p50 {statistics.median(answers):.2f} s, max {max(answers):.2f} s; "
        f"with the result downloaded p50 {statistics.median(downloads):.2f} s",
        flush=True,
    )


def models_with_hint_model(tmp: Path, base: Settings, wanted: str | None) -> tuple[Path, str]:
    """A models directory (the installed ones, linked) and the hint model to use."""
    models_dir = tmp / "models"
    models_dir.mkdir()
    installed = installed_models(base.models_dir)
    for manifest in installed:
        (models_dir / manifest.directory.name).symlink_to(manifest.directory.resolve())
    hint_models = [m.name for m in installed if m.hints]
    if wanted is not None:
        return models_dir, wanted
    if hint_models:
        return models_dir, hint_models[0]
    from tests.model_builder import build_test_model

    build_test_model(models_dir, TEST_HINT_MODEL, hints=True)
    print(f"no installed model takes hints: using {TEST_HINT_MODEL}, whose network costs next to nothing")
    return models_dir, TEST_HINT_MODEL


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument(
        "--hint-model", help="an installed model that takes hints (default: the first, or the test one)"
    )
    parser.add_argument("--hints", type=int, default=8, help="hints per photo")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        base = Settings.from_env()
        models_dir, hint_model = models_with_hint_model(tmp, base, args.hint_model)
        base = base.with_overrides(
            data_dir=tmp / "data",
            api_port=free_port(),
            redis_url=None,
            s3_endpoint_url=None,
            worker_metrics_port=free_port(),
            models_dir=models_dir,
        )
        with LocalStack(base) as stack:
            stack.start_api(log_path=tmp / "api.log")
            stack.start_workers(1, log_dir=tmp)
            api = stack.api_url
            data = photo_jpeg()
            print(f"{SIDE[0]}x{SIDE[1]} JPEG of {len(data) // 1024} KB, one worker, idle between requests")
            hints = json.dumps(random_hints(args.hints))
            measure(api, f"{hint_model}, {args.hints} hints", data, {"model": hint_model, "hints": hints}, args.samples)
            measure(api, f"{hint_model}, no hints", data, {"model": hint_model}, args.samples)
            default = load_manifest(stack.settings.models_dir, stack.settings.model).name
            measure(api, f"{default} (the default), no hints", data, {}, args.samples)


if __name__ == "__main__":
    main()
