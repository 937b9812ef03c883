"""The MQTT in-flight window: rows confirm strictly in order, whatever order the acknowledgements come in."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edgecount_core.inflight import InFlight


@given(st.integers(1, 40).flatmap(lambda n: st.tuples(st.just(n), st.permutations(range(n)),
                                                       st.integers(0, 40))))
def test_rows_confirm_only_once_every_earlier_row_is_acknowledged(case: tuple[int, list[int], int]) -> None:
    n, ack_order, how_many = case
    window = InFlight(confirmed=100)
    for i in range(n):
        window.sent(message_id=1000 + i, row=101 + i, topic=f"t/{i}", now=float(i))
    acked: set[int] = set()
    for i in ack_order[:how_many]:
        assert window.acknowledged(1000 + i) == (101 + i, f"t/{i}")
        acked.add(i)
        prefix = 0
        while prefix in acked:
            prefix += 1
        assert window.confirmed == 100 + prefix
        assert len(window) == n - prefix
    assert window.acknowledged(99) is None  # an id from before a reconnect


def test_the_oldest_wait_and_a_reconnect() -> None:
    window = InFlight()
    assert window.oldest_age(50.0) == 0.0 and window.last_sent == 0
    window.sent(1, 7, "a", now=10.0)
    window.sent(2, 8, "b", now=12.0)
    assert window.oldest_age(50.0) == 40.0 and window.last_sent == 8
    window.acknowledged(1)
    assert window.oldest_age(50.0) == 38.0 and window.confirmed == 7
    assert window.refused(2) == (8, "b")
    window.forget()
    assert len(window) == 0 and window.confirmed == 7 and window.last_sent == 7
