"""The ``colorize`` command, run in-process against the real stack (and once as a subprocess)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from cli.main import main
from shared.colour.model_manifests import DEFAULT_MODEL
from shared.settings import PROJECT_ROOT
from tests.integration_fixtures import TEST_MODEL


def write_image(path: Path, width: int, height: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    x, y = np.meshgrid(np.linspace(0, 255, width), np.linspace(0, 255, height))
    ok, data = cv2.imencode(path.suffix, np.dstack([x, y, (x + y) / 2]).astype(np.uint8))
    assert ok
    path.write_bytes(data.tobytes())
    return path


def run(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), env=env or {}, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def api_url(api_server, workers) -> str:
    return api_server.url


@pytest.mark.integration
def test_submit_wait_writes_jpegs_in_the_folder_layout(api_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "scans"
    write_image(folder / "family" / "wedding.png", 30, 20)
    write_image(folder / "street.jpg", 18, 26)
    out = tmp_path / "results"
    code, stdout, stderr = run("--api", api_url, "submit", str(folder), "--wait", "--out", str(out), "--poll", "0.1")
    assert code == 0, stderr
    assert cv2.imread(str(out / "family" / "wedding.jpg")).shape == (20, 30, 3)
    assert cv2.imread(str(out / "street.jpg")).shape == (26, 18, 3)
    assert "2 result(s) of job" in stdout and str(out) in stdout
    # Not a terminal: plain progress lines, ending at 100 %.
    assert "processing: 100% (2/2 img)" in stderr and "download: 100% (2/2 img)" in stderr


@pytest.mark.integration
def test_submit_with_output_options_writes_scaled_webp_results(api_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "scans"
    write_image(folder / "wide.png", 40, 20)
    write_image(folder / "small.jpg", 10, 12)
    out = tmp_path / "results"
    code, stdout, stderr = run(
        "--api", api_url, "submit", str(folder), "--format", "webp", "--quality", "70", "--max-side", "16",
        "--wait", "--out", str(out), "--poll", "0.1", "--json",
    )  # fmt: skip
    assert code == 0, stderr
    assert json.loads(stdout)["job"]["output"] == {"format": "webp", "quality": 70, "max_side": 16}
    assert sorted(p.name for p in out.iterdir()) == ["small.webp", "wide.webp"]
    assert cv2.imread(str(out / "wide.webp")).shape == (8, 16, 3)  # scaled down, aspect kept
    assert cv2.imread(str(out / "small.webp")).shape == (12, 10, 3)  # never up


@pytest.mark.integration
def test_status_json_and_cancel_of_a_finished_job(api_url: str, tmp_path: Path) -> None:
    image = write_image(tmp_path / "one.png", 16, 16)
    env = {"COLORIZE_API_URL": api_url}
    code, stdout, _ = run("submit", str(image), "--json", env=env)
    assert code == 0
    job_id = json.loads(stdout)["id"]
    assert run("wait", job_id, "--poll", "0.1", env=env)[0] == 0

    code, stdout, _ = run("status", job_id, "--items", "--json", env=env)
    status = json.loads(stdout)
    assert code == 0 and status["id"] == job_id and status["status"] == "succeeded"
    assert [item["output_path"] for item in status["items"]] == ["one.jpg"]

    code, _, stderr = run("cancel", job_id, env=env)
    assert code == 1 and "(conflict)" in stderr

    code, stdout, _ = run("download", job_id, "--zip", "--out", str(tmp_path / "z"), "--json", env=env)
    assert code == 0 and json.loads(stdout)["files"] == [str(tmp_path / "z" / f"{job_id}.zip")]


@pytest.mark.integration
def test_failed_job_exits_1_and_names_the_error_code(api_url: str, tmp_path: Path) -> None:
    broken = write_image(tmp_path / "torn.jpg", 40, 40)
    broken.write_bytes(broken.read_bytes()[:200])
    code, _stdout, stderr = run(
        "--api", api_url, "submit", str(broken), "--wait", "--out", str(tmp_path / "o"), "--poll", "0.1"
    )
    assert code == 1
    assert "torn.jpg: corrupt_image" in stderr


@pytest.mark.integration
def test_models_list_and_unknown_job(api_url: str) -> None:
    code, stdout, _ = run("--api", api_url, "models", "list", "--json")
    assert code == 0 and TEST_MODEL in [model["name"] for model in json.loads(stdout)]
    code, _, stderr = run("--api", api_url, "status", "f" * 32)
    assert code == 1 and "(not_found)" in stderr


@pytest.mark.integration
def test_jobs_lists_newest_first_and_delete_removes_the_job(api_url: str, tmp_path: Path) -> None:
    image = write_image(tmp_path / "one.png", 16, 16)
    broken = tmp_path / "torn.png"
    broken.write_bytes(image.read_bytes()[:60])
    env = {"COLORIZE_API_URL": api_url}
    older, newer = (json.loads(run("submit", str(path), "--json", env=env)[1])["id"] for path in (image, broken))
    assert run("wait", newer, "--poll", "0.1", env=env)[0] == 1  # a torn image: the job fails
    code, stdout, _ = run("jobs", "--limit", "2", env=env)
    lines = stdout.splitlines()
    assert code == 0 and lines[0].split() == ["JOB", "STATUS", "CREATED", "DONE", "FAILED", "TOTAL", "SOURCE"]
    assert lines[1].split()[:2] == [newer, "failed"] and lines[2].split()[0] == older
    assert lines[1].split()[-2:] == ["torn.png", "(image)"]
    code, stdout, _ = run("jobs", "--status", "failed", "--limit", "150", "--json", env=env)
    listed = json.loads(stdout)
    assert code == 0 and listed[0]["id"] == newer and {job["status"] for job in listed} == {"failed"}
    code, stdout, _ = run("delete", older, env=env)
    assert code == 0 and stdout.strip() == f"job {older} deleted"
    code, _, stderr = run("delete", older, env=env)
    assert code == 1 and "(not_found)" in stderr
    assert run("status", older, env=env)[0] == 1
    assert older not in run("jobs", "--limit", "100", env=env)[1]


def test_the_status_choices_are_the_job_statuses() -> None:
    from cli.main import JOB_STATUSES
    from shared.jobs.records import JobStatus

    assert JOB_STATUSES == tuple(JobStatus)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["submit"],
        ["status"],
        ["bogus"],
        ["status", "abc", "--nope"],
        ["submit", "x.png", "--temperature", "hot"],
        ["jobs", "--status", "done"],
        ["delete"],
        ["submit", "x.png", "--format", "gif"],
        ["submit", "x.png", "--quality", "high"],
        ["submit", "x.png", "--max-side", "big"],
        ["models"],
        ["models", "install", "resnet"],
        ["submit", "/no/such/file.png"],
        ["submit", "x.png", "--zip"],
    ],
)
def test_bad_usage_exits_2(argv: list[str]) -> None:
    assert run(*argv)[0] == 2


@pytest.mark.parametrize("sheet_rows", [0, 2])
def test_eval_scores_grey_and_the_default_model_by_source(
    tmp_path: Path, sheet_rows: int, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = tmp_path / "photos"
    write_image(photos / "beach" / "dunes.jpg", 64, 48)
    write_image(photos / "beach" / "pier.jpg", 40, 40)
    write_image(photos / "city" / "tram.png", 50, 30)
    out = tmp_path / "report"
    code, _, stderr = run("eval", str(photos), "--no-judge", "--out", str(out), "--sheet-rows", str(sheet_rows))
    assert code == 0, stderr
    table = (out / "table.md").read_text()
    for source in ("beach", "city", "all"):
        assert f"| {source} | grey |" in table
        assert f"| {source} | {DEFAULT_MODEL} |" in table
    assert (out / "contact_sheet.png").exists() == (sheet_rows > 0)
    assert table in capsys.readouterr().out  # the table is printed too (by the delegated command)


def test_eval_sheet_only_pages_grey_photos_beside_their_colorization(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = tmp_path / "old-photos"
    for i, (width, height) in enumerate([(64, 48), (40, 60), (50, 50)]):
        grey = cv2.cvtColor(cv2.imread(str(write_image(photos / f"scan{i}.png", width, height))), cv2.COLOR_BGR2GRAY)
        cv2.imwrite(str(photos / f"scan{i}.png"), grey)
    out = tmp_path / "sheets"
    code, _, stderr = run("eval", "--sheet-only", str(photos), "--out", str(out), "--sheet-rows", "2")
    assert code == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == ["contact_sheet_01.png", "contact_sheet_02.png"]
    first, second = (cv2.imread(str(out / name)) for name in ("contact_sheet_01.png", "contact_sheet_02.png"))
    tile = 256 + 4
    assert first.shape == (24 + 2 * tile, 2 * tile, 3) and second.shape == (24 + tile, 2 * tile, 3)
    chroma = np.hypot(*cv2.cvtColor(first, cv2.COLOR_BGR2LAB)[24:, :, 1:].astype(float).transpose(2, 0, 1) - 128)
    assert chroma[:, :tile].max() < 3, "the input column shows the grey photos as they are"
    assert chroma[:, tile:].mean() > 2 * chroma[:, :tile].mean() + 1, f"{DEFAULT_MODEL}'s column is not coloured"
    assert "3 photos on 2 contact sheet(s)" in capsys.readouterr().out


def test_delegated_commands_answer_their_own_help() -> None:
    assert run("models", "install", "eccv16", "--help")[0] == 0
    assert run("keys", "--help")[0] == 0
    assert run("eval", "--no-such-option")[0] == 2
    assert run("eval", ".", "--sheet-rows", "-1")[0] == 2
    assert run("eval", ".", "--sheet-only", "--sheet-rows", "0")[0] == 2
    assert run("models", "decoding", "--help")[0] == 0
    assert run("keys", "create")[0] == 2  # --tenant is required


@pytest.mark.integration
def test_client_commands_load_no_engine_or_service_code(api_url: str) -> None:
    heavy = ["onnxruntime", "torch", "cv2", "numpy", "boto3", "celery", "redis", "flask", "api", "worker"]
    script = (
        "import sys; from cli.main import main; "
        f"code = main(['--api', {api_url!r}, 'status', '{'a' * 32}']); "
        f"print(code, [m for m in {heavy!r} if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.split(None, 1) == ["1", "[]\n"], result.stderr
