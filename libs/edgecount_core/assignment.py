"""Minimum-cost assignment of rows to columns (tracks to detections), without SciPy.

The tracker needs exactly one function of SciPy, and SciPy is the heaviest thing a counter process
would otherwise load (and a Fortran build on the appliance image). This is the shortest augmenting
path form of the Hungarian method with row and column potentials, one row at a time, the inner loop
vectorised over columns: O(n^2 m) for n <= m, a few hundred microseconds for a crowded frame.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["linear_assignment"]

F64 = npt.NDArray[np.float64]
Ints = npt.NDArray[np.intp]


def linear_assignment(cost: npt.ArrayLike) -> tuple[Ints, Ints]:
    """``(rows, cols)`` of an assignment of ``min(n, m)`` pairs with the least total cost, rows ascending.

    Same contract as ``scipy.optimize.linear_sum_assignment`` for finite costs.
    """
    c = np.asarray(cost, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"cost must be a matrix, got shape {c.shape}")
    if not np.all(np.isfinite(c)):
        raise ValueError("cost must be finite")
    if c.shape[0] > c.shape[1]:
        cols, rows = linear_assignment(c.T)
        order = np.argsort(rows, kind="stable")
        return rows[order], cols[order]
    n, m = c.shape
    if n == 0:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    owner = np.zeros(m + 1, np.intp)  # owner[j]: the (1-based) row holding column j; 0 = free
    way = np.zeros(m + 1, np.intp)
    for i in range(1, n + 1):
        owner[0] = i
        j0 = 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = owner[j0]
            free = ~used[1:]
            reduced = c[i0 - 1] - u[i0] - v[1:]
            better = free & (reduced < minv[1:])
            minv[1:][better] = reduced[better]
            way[1:][better] = j0
            candidates = np.where(free, minv[1:], np.inf)
            j1 = int(np.argmin(candidates)) + 1
            delta = candidates[j1 - 1]
            used_cols = np.flatnonzero(used)
            u[owner[used_cols]] += delta
            v[used_cols] -= delta
            minv[1:][free] -= delta
            j0 = j1
            if owner[j0] == 0:
                break
        while j0:  # flip the augmenting path
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    cols = np.flatnonzero(owner[1:]).astype(np.intp)
    rows = (owner[1:][cols] - 1).astype(np.intp)
    order = np.argsort(rows, kind="stable")
    return rows[order], cols[order]
