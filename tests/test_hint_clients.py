"""Colour hints from the command line (``--hint``, ``--hints``) and the Python client, against a
real API server and a worker whose models directory has the hint-taking test model."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from cli.main import main
from client import Client, ClientError, Hint
from tests.integration_fixtures import HINT_TEST_MODEL, TEST_MODEL

pytestmark = pytest.mark.integration

RED, BLUE = "#d02020", "#2040d0"


@pytest.fixture(scope="module")
def api_url(hint_api_server) -> str:
    return hint_api_server.url


def grey_png(path: Path) -> Path:
    Image.new("L", (40, 30), 128).save(path, "PNG")
    return path


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), env={}, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_cli_sends_the_files_hints_then_each_hint(api_url: str, tmp_path: Path) -> None:
    photo = grey_png(tmp_path / "photo.png")
    hints = tmp_path / "hints.json"
    hints.write_text(json.dumps([{"x": 0.1, "y": 0.2, "color": BLUE}]))
    code, stdout, stderr = run(
        "--api", api_url, "--json", "submit", str(photo), "--model", HINT_TEST_MODEL,
        "--hints", str(hints), "--hint", "0.25,0.5,#D02020", "--hint", "0.75,0.5,#2040d0,0.1",
    )  # fmt: skip
    assert code == 0, stderr
    assert json.loads(stdout)["hints"] == [
        {"x": 0.1, "y": 0.2, "color": BLUE},
        {"x": 0.25, "y": 0.5, "color": RED},  # as the API records it: lower case
        {"x": 0.75, "y": 0.5, "color": BLUE, "radius": 0.1},
    ]


@pytest.mark.parametrize(
    "hint", ["0.5,#d02020", "0.5,0.5", "a,0.5,#d02020", "0.5,0.5,#d02020,big", "0.5,0.5,#d02020,0.1,9"]
)
def test_cli_refuses_a_hint_it_cannot_read_as_usage(tmp_path: Path, hint: str, capsys) -> None:
    code, _, _ = run("--api", "http://127.0.0.1:9", "submit", str(grey_png(tmp_path / "p.png")), "--hint", hint)
    assert code == 2 and "argument --hint" in capsys.readouterr().err  # argparse's own words


def test_cli_shows_what_the_api_says_of_a_bad_hint(api_url: str, tmp_path: Path) -> None:
    photo = grey_png(tmp_path / "photo.png")
    code, _, stderr = run(
        "--api", api_url, "submit", str(photo), "--model", HINT_TEST_MODEL, "--hint", "1.5,0.5,#d02020"
    )
    assert code != 0 and "hints[0].x" in stderr
    code, _, stderr = run("--api", api_url, "submit", str(photo), "--model", TEST_MODEL, "--hint", "0.5,0.5,#d02020")
    assert code != 0 and "hints_not_supported" in stderr


def test_cli_refuses_hints_for_images_by_reference(tmp_path: Path) -> None:
    code, _, stderr = run(
        "--api", "http://127.0.0.1:9", "submit", "--url", "https://example.com/a.png", "--hint", "0.5,0.5,#d02020"
    )
    assert code == 2 and "single image" in stderr


@pytest.mark.parametrize("direct_upload_limit", [10**9, 0], ids=["form", "presigned-upload"])
def test_client_sends_hints_in_a_form_or_a_json_job(api_url: str, tmp_path: Path, direct_upload_limit: int) -> None:
    hints = [Hint(0.25, 0.5, RED, 0.1), Hint(0.75, 0.5, BLUE)]
    with Client(api_url, direct_upload_limit=direct_upload_limit) as client:
        job = client.submit(grey_png(tmp_path / "photo.png"), model=HINT_TEST_MODEL, hints=hints, wait=30)
        assert job.succeeded and job.hints == tuple(hints)
        assert {model.name: model.hints for model in client.models()}[HINT_TEST_MODEL] is True
        with pytest.raises(ClientError) as refused:
            client.submit(tmp_path / "photo.png", model=TEST_MODEL, hints=hints)
        assert refused.value.status == 422 and refused.value.code == "hints_not_supported"


def album(folder: Path) -> Path:
    (folder / "album").mkdir(parents=True)
    grey_png(folder / "album" / "a.png")
    grey_png(folder / "album" / "b.png")
    return folder / "album"


def test_cli_sends_a_file_of_hints_by_path_with_a_folder_and_shows_what_matched(api_url: str, tmp_path: Path) -> None:
    folder = album(tmp_path)
    hints = tmp_path / "hints.json"
    hints.write_text(json.dumps({"a.png": [{"x": 0.5, "y": 0.5, "color": BLUE}], "c.png": []}))
    code, stdout, stderr = run(
        "--api", api_url, "submit", str(folder), "--model", HINT_TEST_MODEL, "--hints", str(hints), "--wait",
        "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert code == 0, stderr
    assert "1 hinted path(s) match no item, their hints unused: c.png" in stderr
    with Client(api_url) as client:
        job = client.job(stderr.split("job ", 1)[1].split(":", 1)[0])  # "job <id>: <url>"
        assert job.unmatched_hints == ("c.png",) and job.unmatched_hint_count == 1
        items = {item.path: item for item in client.items(job.id)}
    assert items["a.png"].hints == (Hint(0.5, 0.5, BLUE),) and items["b.png"].hints == ()
    code, stdout, _ = run("--api", api_url, "status", job.id, "--items")
    assert code == 0 and "a.png (1 hint)" in stdout and "c.png" in stdout


def test_cli_refuses_single_image_points_beside_hints_by_path(tmp_path: Path) -> None:
    hints = tmp_path / "hints.json"
    hints.write_text(json.dumps({"a.png": [{"x": 0.5, "y": 0.5, "color": BLUE}]}))
    code, _, stderr = run(
        "--api",
        "http://127.0.0.1:9",
        "submit",
        str(album(tmp_path)),
        "--hints",
        str(hints),
        "--hint",
        "0.5,0.5,#d02020",
    )
    assert code == 2 and "single image" in stderr


@pytest.mark.parametrize("direct_upload_limit", [10**9, 0], ids=["form", "presigned-upload"])
def test_client_sends_hints_by_path_with_an_archive(api_url: str, tmp_path: Path, direct_upload_limit: int) -> None:
    with Client(api_url, direct_upload_limit=direct_upload_limit) as client:
        job = client.submit(album(tmp_path), model=HINT_TEST_MODEL, hints={"b.png": [Hint(0.5, 0.5, RED, 0.2)]})
        job = client.wait(job.id, timeout_s=60)
        assert job.succeeded and job.unmatched_hint_count == 0
        items = {item.path: item for item in client.items(job.id)}
        assert items["b.png"].hints == (Hint(0.5, 0.5, RED, 0.2),) and items["a.png"].hints == ()


def test_client_sends_hints_by_path_with_images_by_reference(api_url: str) -> None:
    # The model refuses them before the URL is looked at: they were sent.
    with Client(api_url) as client, pytest.raises(ClientError) as refused:
        client.submit_references(
            urls=["https://example.com/a.png"], model=TEST_MODEL, hints={"a.png": [Hint(0.5, 0.5, RED)]}
        )
    assert refused.value.status == 422 and refused.value.code == "hints_not_supported"
