"""An archive's or a source's colour hints by item path, between the request and the expander.

The API keeps a request's map (:func:`shared.colour.hint_rules.hint_map`) under the job's
``hint-map`` key, apart from the job's record: the record is read at every step of the job,
the map only while the archive is expanded. The expander merges it over the archive's own
``hints.json`` (the request wins per path), gives each item the hints of its path, and records
the paths that matched no item in the job's record, where the job document and ``manifest.json``
show them; a misspelt path must not pass unseen.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from redis import Redis

from shared.colour.hint_rules import HintMap, decode_map, encode_map
from shared.colour.hints import Hint
from shared.redis_keys import KeyedScript, RedisKeys
from shared.settings import Settings

# The job document and the manifest list this many unmatched paths, and say how many there were.
MAX_SHOWN_UNMATCHED = 100

# Only on a job that still exists: a deleted one is not brought back.
_RECORD_UNMATCHED = """
if redis.call('exists', record) == 0 then return 0 end
redis.call('hset', record, 'unmatched_hints', ARGV[1], 'unmatched_hint_count', ARGV[2])
return 1
"""


class HintMaps:
    """Jobs' hint maps in Redis, and what of them matched no item."""

    def __init__(self, redis: Redis, settings: Settings, namespace: str | None = None) -> None:
        self.redis = redis
        self.ttl_s = settings.result_ttl_s
        self.keys = RedisKeys(settings.redis_namespace if namespace is None else namespace)
        self._record_unmatched = KeyedScript(redis, ("record",), _RECORD_UNMATCHED)

    def put(self, job_id: str, hints: Mapping[str, tuple[Hint, ...]]) -> None:
        self.redis.set(self.keys.job(job_id).hint_map, encode_map(hints), ex=self.ttl_s)

    def get(self, job_id: str) -> HintMap:
        text = self.redis.get(self.keys.job(job_id).hint_map)
        return decode_map(text) if text else {}

    def forget(self, job_id: str) -> None:
        self.redis.delete(self.keys.job(job_id).hint_map)

    def record_unmatched(self, job_id: str, paths: Sequence[str]) -> None:
        shown = json.dumps(sorted(paths)[:MAX_SHOWN_UNMATCHED], separators=(",", ":"))
        self._record_unmatched({"record": self.keys.job(job_id).record}, [shown, len(paths)])


def merged(archive: Mapping[str, tuple[Hint, ...]], request: Mapping[str, tuple[Hint, ...]]) -> HintMap:
    """The archive's hints.json with the request's map over it: the request's list wins for its paths."""
    return {**archive, **request}
