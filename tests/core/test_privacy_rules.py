"""The privacy aggregator: zones report occupancy per bucket; its saved state round-trips as plain data."""

from __future__ import annotations

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from edgecount_core.privacy import BucketAggregator


def test_zone_records_carry_the_occupancy_at_the_end_of_each_bucket() -> None:
    agg = BucketAggregator("s/d", lines=["door"], zones=["till"], bucket_s=10)
    agg.add("zone", "till", "enter", 1.0, occupancy=1)
    agg.add("zone", "till", "enter", 2.0, occupancy=2)
    agg.add("zone", "till", "exit", 5.0, occupancy=1)
    agg.add("line", "door", "in", 6.0)
    first = agg.advance(13.0)
    assert [(r.kind, r.name, r.n_in, r.n_out, r.occupancy) for r in first] == [
        ("line", "door", 1, 0, None), ("zone", "till", 2, 1, 1)]
    nobody = agg.advance(33.0)  # a bucket where nobody came or left keeps the occupancy it started with
    assert [(r.name, r.occupancy) for r in nobody if r.kind == "zone"] == [("till", 1), ("till", 1)]


events = st.lists(st.tuples(st.sampled_from(["line", "zone"]), st.sampled_from(["in", "out", "enter", "exit"]),
                            st.floats(0, 500), st.integers(0, 20)), max_size=40)


@given(events, st.floats(0, 600))
def test_saved_state_round_trips_and_emits_the_same_records(evs: list, watermark: float) -> None:
    def fresh() -> BucketAggregator:
        return BucketAggregator("s/d", lines=["door"], zones=["till"], bucket_s=30)

    a = fresh()
    for kind, direction, ts, occ in sorted(evs, key=lambda e: e[2]):
        a.add(kind, "door" if kind == "line" else "till", direction, ts, occ if kind == "zone" else None)
    b = fresh()
    b.restore(msgpack.unpackb(msgpack.packb(a.to_state()), raw=False, strict_map_key=False))
    assert a.advance(watermark) == b.advance(watermark)
    assert a.flush() == b.flush()
