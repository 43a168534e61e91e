"""The API process stays light: importing the app loads none of the image decoders (OpenCV,
numpy, Pillow), which only workers need. The API sniffs uploads by their magic bytes
(``shared/imaging/formats.py``)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DECODER_PACKAGES = ("cv2", "numpy", "PIL")
# "import time:  self [us] | cumulative | <indentation by depth><module>"
_LINE = re.compile(r"import time:\s+\d+ \|\s+\d+ \|( *)(\S+)$")


def imported_modules(statement: str) -> list[tuple[int, str]]:
    """``(depth, module)`` for every module that ``statement`` imports, in the order their
    imports finish (``python -X importtime``): a module's own imports come before it, one deeper."""
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [(len(m.group(1)), m.group(2)) for m in map(_LINE.match, run.stderr.splitlines()) if m]


def import_chain(modules: list[tuple[int, str]], index: int) -> list[str]:
    """The module at ``index`` and each module whose import brought it in, up to the top."""
    depth, name = modules[index]
    chain = [name]
    for outer_depth, outer in modules[index + 1 :]:
        if outer_depth < depth:
            chain.append(outer)
            depth = outer_depth
    return chain


def test_importing_the_api_loads_no_image_decoder() -> None:
    modules = imported_modules("import api.app")
    assert any(name == "api.app" for _, name in modules)
    chains = [
        " <- ".join(import_chain(modules, i))
        for i, (_, name) in enumerate(modules)
        if name.split(".")[0] in DECODER_PACKAGES
    ]
    assert not chains, chains[:3]
