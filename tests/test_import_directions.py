"""The packages import one another only in the allowed directions: the contracts in
pyproject.toml ([tool.importlinter]), checked by import-linter as scripts/lint does, so that
scripts/test fails on a broken direction too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def test_every_import_direction_contract_is_kept() -> None:
    run = subprocess.run(
        [str(LINT_IMPORTS), "--no-logo", "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,  # a broken contract's report is the assertion's message
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout, run.stdout
