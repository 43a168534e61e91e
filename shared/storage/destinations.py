"""Destinations: where a job writes its results outside the service's own store, a prefix of one of
the tenant's stored connections (:mod:`shared.tenancy.stored_connections`).

A job's destination (:class:`DestinationStore`) is kept beside its record, for as long as it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from redis import Redis

from shared.redis_keys import RedisKeys
from shared.settings import Settings
from shared.storage.sources import check_prefix
from shared.tenancy.stored_connections import check_name

MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class Destination:
    """Results go to ``prefix`` + their output path in the connection's bucket, with
    ``manifest.json`` at the end; ``keep_in_service``: in the service's store as well."""

    connection: str
    prefix: str = ""
    keep_in_service: bool = True


class DestinationStore:
    """Each job's destination, when it has one."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.keys = RedisKeys(settings.redis_namespace)
        self.ttl_s = settings.result_ttl_s

    def set(self, job_id: str, destination: Destination) -> None:
        body = {
            "connection": destination.connection,
            "prefix": destination.prefix,
            "keep_in_service": destination.keep_in_service,
        }
        # Kept a little past the job's own records (renewed when it finishes): the last chunk reads it.
        self.redis.set(self.keys.job_destination(job_id), json.dumps(body), ex=self.ttl_s * 2)

    def get(self, job_id: str) -> Destination | None:
        value = self.redis.get(self.keys.job_destination(job_id))
        if value is None:
            return None
        body = json.loads(value)
        return Destination(body["connection"], body["prefix"], bool(body["keep_in_service"]))


def check_destination(destination: Destination) -> Destination:
    check_name(destination.connection, "destination.connection")
    check_prefix(destination.prefix, "destination.prefix")
    return destination
