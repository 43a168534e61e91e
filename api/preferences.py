"""``Prefer: wait=N`` (RFC 7240) on job creation: answer with the finished job when it ends soon.

Only the ``wait`` preference is read; any other is ignored, as the RFC asks of preferences a
server does not support. A ``wait`` that is not a whole number of seconds within the bound is
refused (400) before anything is created: a client asking for it counts on the answer.

The wait polls the job's status in Redis with short sleeps. Under gunicorn's gevent workers
``time.sleep`` yields to other requests (the worker patches it), and under a threaded server
it holds a thread, so a waiting request costs no CPU either way.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable

from shared.errors import InvalidRequest
from shared.jobs.records import Job
from shared.jobs.store import JobStore

HEADER = "Prefer"
APPLIED_HEADER = "Preference-Applied"
MAX_WAIT_S = 60
# Digits a wait may have (leading zeros included): longer is out of range, refused like 61,
# before any conversion (int() of thousands of digits raises, and costs time quadratic in them).
MAX_WAIT_DIGITS = 9
# Of a refused value, this much is quoted back in the message.
QUOTED_CHARS = 20
# Polls start quick (a single image takes well under a second) and slow down to this.
FIRST_POLL_S = 0.05
MAX_POLL_S = 0.5

# One preference: a token, optionally = a token or a quoted string, then parameters after ';'.
_PREFERENCE = re.compile(
    r"""\s*(?P<name>[!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*(?:=\s*(?P<value>"(?:[^"\\]|\\.)*"|[^\s;,]*))?\s*(?:;[^,]*)?"""
)


def requested_wait(values: Iterable[str]) -> int | None:
    """The seconds of the first ``wait`` preference among the ``Prefer`` header values; None when
    there is none. InvalidRequest when it is not a whole number from 1 to ``MAX_WAIT_S``."""
    for value in values:
        for name, raw in _preferences(value):
            if name.lower() == "wait":
                return _seconds(raw)
    return None


def wait_for_end(jobs: JobStore, job_id: str, seconds: float) -> Job | None:
    """The job once it has ended, if it does within ``seconds``; None when it has not (or is gone)."""
    deadline = time.monotonic() + seconds
    pause = FIRST_POLL_S
    while True:
        job = jobs.find(job_id)
        if job is None:
            return None
        if job.is_terminal:
            return job
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(pause, left))
        pause = min(pause * 2, MAX_POLL_S)


def _preferences(value: str) -> list[tuple[str, str]]:
    found = []
    position = 0
    while position < len(value):
        match = _PREFERENCE.match(value, position)
        if match is None or match.end() == position:
            break  # not a preference: the rest of this value is ignored
        found.append((match["name"], match["value"] or ""))
        position = match.end()
        if position < len(value) and value[position] != ",":
            break
        position += 1
    return found


def _seconds(raw: str) -> int:
    text = raw[1:-1] if len(raw) >= 2 and raw.startswith('"') else raw
    if not _whole_seconds(text) or not 1 <= int(text) <= MAX_WAIT_S:
        quoted = raw if len(raw) <= QUOTED_CHARS else raw[:QUOTED_CHARS] + "..."
        raise InvalidRequest(
            f"the Prefer header's wait must be a whole number of seconds from 1 to {MAX_WAIT_S}, not {quoted!r}",
            field=HEADER,
            minimum=1,
            maximum=MAX_WAIT_S,
        )
    return int(text)


def _whole_seconds(text: str) -> bool:
    """Whether ``text`` is ASCII digits few enough to convert at once (``'²'.isdigit()`` holds too)."""
    return 0 < len(text) <= MAX_WAIT_DIGITS and text.isascii() and text.isdigit()
