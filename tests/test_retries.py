"""How often a task is retried: a few times for its own failures, for as long as an outage
may last when storage or Redis is away."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import redis

from shared.errors import CorruptArchive, ServiceUnavailable
from shared.settings import Settings
from worker.retry_policy import backoff_cap_s, retry_limit


def task(settings: Settings, max_retries: int = 5) -> SimpleNamespace:
    return SimpleNamespace(max_retries=max_retries, app=SimpleNamespace(colorize_settings=settings))


def backoff_total(settings: Settings, retries: int) -> float:
    return sum(min(backoff_cap_s(settings), 2**i) for i in range(retries))


@pytest.mark.parametrize("outage", [ServiceUnavailable("storage unreachable"), redis.ConnectionError("refused")])
def test_outages_are_retried_for_the_configured_time(outage: Exception) -> None:
    settings = Settings(outage_retry_s=600, visibility_timeout_s=600)
    limit = retry_limit(task(settings), outage)
    assert backoff_total(settings, limit) >= 600 > backoff_total(settings, limit - 1)
    assert backoff_cap_s(settings) == 60


def test_retry_backoff_stays_under_half_the_visibility_timeout() -> None:
    settings = Settings(outage_retry_s=60, visibility_timeout_s=15, task_time_limit_s=10, task_soft_time_limit_s=8)
    assert backoff_cap_s(settings) == 7
    assert retry_limit(task(settings), ServiceUnavailable("down")) == 11  # 1 + 2 + 4, then 7 s each: 63 s


def test_other_failures_keep_the_task_limit() -> None:
    settings = Settings(outage_retry_s=3600)
    assert retry_limit(task(settings, max_retries=5), CorruptArchive("bad")) == 5
    assert retry_limit(task(settings, max_retries=5), RuntimeError("model")) == 5
    # A short outage budget never allows fewer retries than the task's own.
    assert retry_limit(task(Settings(outage_retry_s=1), max_retries=5), ServiceUnavailable("down")) == 5
