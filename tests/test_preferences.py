"""Reading ``Prefer: wait=N`` (RFC 7240) from the header values of a request."""

from __future__ import annotations

import pytest

from api.preferences import MAX_WAIT_S, requested_wait
from shared.errors import InvalidRequest


@pytest.mark.parametrize(
    "values, seconds",
    [
        ([], None),
        (["respond-async"], None),
        (["wait=10"], 10),
        (["WAIT = 7"], 7),
        (['wait="12"'], 12),
        (["respond-async, wait=5"], 5),
        (["handling=lenient; strict, wait=3; foo=bar"], 3),
        (["wait=2", "wait=50"], 2),  # the first instance counts (RFC 7240, 2)
        (["respond-async", "wait=60"], MAX_WAIT_S),
        (["waiting=5"], None),
    ],
)
def test_the_first_wait_preference_is_read(values, seconds) -> None:
    assert requested_wait(values) == seconds


@pytest.mark.parametrize("value", ["wait=0", "wait=61", "wait=-1", "wait=1.5", "wait=", "wait", "wait=١٢", 'wait="x"'])
def test_a_wait_out_of_bounds_or_not_a_whole_number_is_refused(value) -> None:
    with pytest.raises(InvalidRequest) as refused:
        requested_wait([value])
    assert refused.value.details == {"field": "Prefer", "minimum": 1, "maximum": MAX_WAIT_S}


@pytest.mark.parametrize("digits", ["9" * 5000, "0" * 4999 + "5", '"' + "1" * 5000 + '"', "9" * 10])
def test_a_wait_of_too_many_digits_is_refused_as_out_of_range_and_not_quoted_whole(digits) -> None:
    with pytest.raises(InvalidRequest) as refused:
        requested_wait([f"wait={digits}"])
    assert refused.value.details == {"field": "Prefer", "minimum": 1, "maximum": MAX_WAIT_S}
    assert len(refused.value.message) < 200
