"""The expansion lease against a real Redis: one holder at a time, renewal and release only by
the holder, and a holder that stops renewing loses it within the lease."""

from __future__ import annotations

import time

import pytest

from shared.ids import new_id
from worker.expansion import ExpansionLease, LeaseLost

pytestmark = pytest.mark.integration

LEASE_S = 0.6


@pytest.fixture
def key(redis_client) -> str:
    key = f"test-lease:{new_id()}"
    yield key
    redis_client.delete(key)


def test_one_expander_at_a_time(redis_client, key: str) -> None:
    first, second = ExpansionLease(redis_client, key, LEASE_S), ExpansionLease(redis_client, key, LEASE_S)
    assert first.acquire()
    assert not second.acquire()
    second.release()  # not the holder: the lease stays
    assert not second.acquire()
    first.release()
    assert second.acquire()


def test_renewal_keeps_the_lease_and_a_silent_holder_loses_it(redis_client, key: str) -> None:
    holder, other = ExpansionLease(redis_client, key, LEASE_S), ExpansionLease(redis_client, key, LEASE_S)
    assert holder.acquire()
    for _ in range(4):  # longer than the lease in all, renewed as it goes
        time.sleep(LEASE_S / 2)
        holder.renew()
        assert not other.acquire()
    time.sleep(LEASE_S * 1.5)  # the holder stalls
    assert other.acquire()
    with pytest.raises(LeaseLost):
        holder.renew()  # it comes back: another expander has the job now
    holder.release()
    assert redis_client.exists(key)  # the release of a lost lease leaves the new holder's alone


def test_a_lapsed_lease_nobody_took_is_taken_again_on_renewal(redis_client, key: str) -> None:
    holder, other = ExpansionLease(redis_client, key, LEASE_S), ExpansionLease(redis_client, key, LEASE_S)
    assert holder.acquire()
    time.sleep(LEASE_S * 1.5)
    holder.renew()
    assert not other.acquire()
