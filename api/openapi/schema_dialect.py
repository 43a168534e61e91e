"""OpenAPI 3.0 schemas generated from pydantic models.

Pydantic writes JSON Schema 2020-12; OpenAPI 3.0 speaks an older dialect. The translation:
``anyOf`` with ``{"type": "null"}`` becomes ``nullable`` (3.0 has no null type), ``const``
becomes a one-value ``enum``, a numeric ``exclusiveMinimum``/``exclusiveMaximum`` becomes the bound
with the 3.0 flag beside it, titles and ``null`` defaults are dropped, and a nested model
is written inline unless it is a component itself (3.0 cannot make a ``$ref`` nullable).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

NULL = {"type": "null"}
# Keywords whose value is one schema, or a list of them.
_ONE_SCHEMA = ("items", "additionalProperties", "not")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf")
# 2020-12's exclusive bound, a number, and the 3.0 bound its flag qualifies.
_EXCLUSIVE_BOUNDS = {"exclusiveMinimum": "minimum", "exclusiveMaximum": "maximum"}


def component_schemas(models: Mapping[str, tuple[type[BaseModel], JsonSchemaMode]]) -> dict[str, Any]:
    """``{name: schema}`` for each ``name: (model, mode)``, in that order, referring to one another
    as ``#/components/schemas/<name>``."""
    keys, document = models_json_schema(
        [(model, mode) for model, mode in models.values()], ref_template="#/$defs/{model}"
    )
    defs = document.get("$defs", {})
    def_names = {name: _def_name(keys[(model, mode)]) for name, (model, mode) in models.items()}
    translator = _Translator(defs, {def_name: name for name, def_name in def_names.items()})
    return {name: translator.schema(defs[def_name]) for name, def_name in def_names.items()}


def model_schema(model: type[BaseModel], mode: JsonSchemaMode = "validation") -> dict[str, Any]:
    """One model's schema, every nested model inline."""
    schema: dict[str, Any] = component_schemas({"_": (model, mode)})["_"]
    return schema


def _def_name(reference: Mapping[str, str]) -> str:
    return reference["$ref"].rsplit("/", 1)[-1]


class _Translator:
    def __init__(self, defs: Mapping[str, Any], components: Mapping[str, str]) -> None:
        self.defs = defs
        self.components = components  # $defs name -> component name

    def schema(self, source: Mapping[str, Any]) -> dict[str, Any]:
        if "$ref" in source:
            return self._reference(source)
        result: dict[str, Any] = {}
        for key, value in source.items():
            if key == "title" or (key == "default" and value is None):
                continue
            if key == "const":
                result["enum"] = [value]
            elif key in _EXCLUSIVE_BOUNDS:
                result[_EXCLUSIVE_BOUNDS[key]] = value
                result[key] = True
            elif key == "anyOf" and NULL in value:
                result.update(self._nullable([s for s in value if s != NULL]))
            elif key in ("properties", "$defs"):
                result[key] = {name: self.schema(schema) for name, schema in value.items()}
            elif key in _ONE_SCHEMA and isinstance(value, Mapping):
                result[key] = self.schema(value)
            elif key in _SCHEMA_LISTS:
                result[key] = [self.schema(s) for s in value]
            else:
                result[key] = value
        return result

    def _reference(self, source: Mapping[str, Any]) -> dict[str, Any]:
        target = _def_name(source)
        siblings = {k: v for k, v in source.items() if k != "$ref"}
        if target in self.components:
            # OpenAPI 3.0 ignores whatever stands beside a $ref: nothing may.
            if any(k != "title" for k in siblings):
                raise ValueError(f"a reference to component {self.components[target]} cannot carry {sorted(siblings)}")
            return {"$ref": f"#/components/schemas/{self.components[target]}"}
        return {**self.schema(self.defs[target]), **self.schema(siblings)}

    def _nullable(self, options: list[Mapping[str, Any]]) -> dict[str, Any]:
        if len(options) != 1:
            raise ValueError("only one type besides null can be made nullable in OpenAPI 3.0")
        inner = self.schema(options[0])
        if "$ref" in inner:
            raise ValueError(f"OpenAPI 3.0 cannot make {inner['$ref']} nullable; keep the model out of the components")
        return {**inner, "nullable": True}
