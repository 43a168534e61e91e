"""The former name of :mod:`shared.manifests`, kept while ``worker/engine.py``,
``models/evaluation.py`` and ``models/training/export.py`` still import it; new code imports
:mod:`shared.manifests`."""

from shared.manifests import (  # noqa: F401
    DEFAULT_MODEL,
    MANIFEST_FILE,
    MAX_TEMPERATURE,
    MIN_TEMPERATURE,
    ModelManifest,
    file_sha256,
    installed_models,
    load_manifest,
    parse_manifest,
    write_manifest,
)
