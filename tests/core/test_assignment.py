"""The tracker's assignment without SciPy: optimal, and the same total cost as SciPy's on any matrix."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edgecount_core.assignment import linear_assignment

scipy_optimize = pytest.importorskip("scipy.optimize")  # a test-only reference, never a runtime dependency

matrices = st.tuples(st.integers(0, 9), st.integers(0, 9)).flatmap(
    lambda s: arrays(np.float64, s, elements=st.floats(-100, 100, allow_nan=False, allow_infinity=False)))


@given(matrices)
def test_same_total_cost_as_scipy(cost: np.ndarray) -> None:
    rows, cols = linear_assignment(cost)
    ref_rows, ref_cols = scipy_optimize.linear_sum_assignment(cost)
    assert len(rows) == len(ref_rows) == min(cost.shape)
    assert list(rows) == sorted(rows) and len(set(rows)) == len(rows) and len(set(cols)) == len(cols)
    assert cost[rows, cols].sum() == pytest.approx(cost[ref_rows, ref_cols].sum(), abs=1e-6)


squares = st.integers(1, 9).flatmap(
    lambda n: arrays(np.float64, (n, n), elements=st.floats(-100, 100, allow_nan=False, allow_infinity=False)))


@given(squares)
def test_square_permutation_is_never_beaten_by_a_swap(cost: np.ndarray) -> None:
    rows, cols = linear_assignment(cost)
    total = cost[rows, cols].sum()
    for a in range(len(rows)):
        for b in range(a + 1, len(rows)):
            swapped = total - cost[rows[a], cols[a]] - cost[rows[b], cols[b]] + cost[rows[a], cols[b]] \
                + cost[rows[b], cols[a]]
            assert swapped >= total - 1e-9


def test_known_answer_and_bad_input() -> None:
    cost = np.array([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]])
    rows, cols = linear_assignment(cost)
    assert list(zip(rows, cols, strict=True)) == [(0, 1), (1, 0), (2, 2)]
    with pytest.raises(ValueError):
        linear_assignment(np.array([[np.inf, 1.0]]))
