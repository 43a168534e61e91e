"""The OpenAPI 3.0 description of the HTTP API, served at ``/v1/openapi.json``.

``document`` assembles it: the paths of each resource (``*_paths``), the answers any operation
may give (``common_responses``), and the component schemas (``components``), generated from the
pydantic models in OpenAPI 3.0's dialect (``schema_dialect``). The operations are built from the
pieces in ``fragments``. Nothing is imported here, so that a module of the API may use one piece
(``api/bodies.py`` reads fields with ``schema_dialect``) without building the rest.
"""
