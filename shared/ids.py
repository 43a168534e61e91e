"""Ids of jobs and uploads: random, URL-safe, the same shape everywhere."""

from __future__ import annotations

import uuid


def new_id() -> str:
    return uuid.uuid4().hex
