"""Times as clients see them: ISO 8601 in UTC, to the millisecond."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload


@overload
def iso_time(timestamp: float) -> str: ...
@overload
def iso_time(timestamp: float | None) -> str | None: ...


def iso_time(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
