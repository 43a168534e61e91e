"""The object key layout of the store. Every key lives under ``tenants/<tenant>/``::

tenants/<tenant>/uploads/<upload id>                     presigned upload of a source
tenants/<tenant>/jobs/<job id>/source                    source posted through the API
tenants/<tenant>/jobs/<job id>/inputs/<first:07d>-<last:07d>   a tar chunk's images, items <first>
                                                         to <last>, back to back (kept until they have all ended)
tenants/<tenant>/jobs/<job id>/results/<index:07d>.<ext>  its colorized image (.jpg, .png or .webp)
"""

from __future__ import annotations

import re

from shared.errors import InvalidRequest
from shared.imaging.output_options import EXTENSIONS, OutputFormat

_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_INPUT_OBJECT = re.compile(r"[0-9]{7,}-[0-9]{7,}")


def _checked_id(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _SAFE_ID.fullmatch(value):
        raise InvalidRequest(f"invalid {kind} {value!r}: use 1-64 letters, digits, '-' or '_'", field=kind)
    return value


def _checked_index(index: int) -> int:
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise InvalidRequest(f"invalid item index {index!r}", field="index")
    return index


def tenant_prefix(tenant: str) -> str:
    return f"tenants/{_checked_id('tenant', tenant)}/"


def upload_key(tenant: str, upload_id: str) -> str:
    return f"{tenant_prefix(tenant)}uploads/{_checked_id('upload id', upload_id)}"


def job_prefix(tenant: str, job_id: str) -> str:
    return f"{tenant_prefix(tenant)}jobs/{_checked_id('job id', job_id)}/"


def source_key(tenant: str, job_id: str) -> str:
    return job_prefix(tenant, job_id) + "source"


def inputs_prefix(tenant: str, job_id: str) -> str:
    return job_prefix(tenant, job_id) + "inputs/"


def input_object_name(first_index: int, last_index: int) -> str:
    """The name of an input object holding items ``first_index`` to ``last_index``: two passes
    over an archive that cut it differently never write the same name."""
    return f"{_checked_index(first_index):07d}-{_checked_index(last_index):07d}"


def input_object_key(tenant: str, job_id: str, name: str) -> str:
    if not _INPUT_OBJECT.fullmatch(name):
        raise InvalidRequest(f"invalid input object name {name!r}", field="name")
    return inputs_prefix(tenant, job_id) + name


def result_key(tenant: str, job_id: str, index: int, output_format: OutputFormat = OutputFormat.JPEG) -> str:
    """Where item ``index``'s result is kept: its extension is that of the job's output format."""
    return f"{job_prefix(tenant, job_id)}results/{_checked_index(index):07d}{EXTENSIONS[output_format]}"


def likely_colours_key(tenant: str, job_id: str, index: int) -> str:
    """Where a hint model keeps item ``index``'s likely colours (``shared.colour.likely_colour_grid``)."""
    return f"{job_prefix(tenant, job_id)}likely-colours/{_checked_index(index):07d}.json.gz"
