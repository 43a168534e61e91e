"""Listing the installed models."""

from __future__ import annotations

from flask import Blueprint, Response

from api.bodies import respond
from api.schemas import InstalledModel, ModelList, TemperatureRange
from api.services import services
from shared.colour.model_manifests import (
    MAX_TEMPERATURE,
    MIN_TEMPERATURE,
    hint_models,
    installed_models,
    load_manifest,
)
from shared.errors import ColorizeError

bp = Blueprint("models", __name__, url_prefix="/v1/models")


@bp.get("")
def list_models() -> Response:
    settings = services().settings
    try:
        default = load_manifest(settings.models_dir, settings.model).name
    except ColorizeError:
        default = None
    manifests = installed_models(settings.models_dir)
    twins = hint_models(manifests)
    models = [
        InstalledModel(
            **{
                **manifest.summary(),
                "name": manifest.name,
                "temperature": manifest.temperature,
                "input_size": manifest.input_size,
                "default": manifest.name == default,
                **({"hint_model": twins[manifest.name]} if manifest.name in twins else {}),
            }
        )
        for manifest in manifests
    ]
    return respond(
        ModelList(
            models=models, default=default, temperature_range=TemperatureRange(min=MIN_TEMPERATURE, max=MAX_TEMPERATURE)
        )
    )
