"""How much of each person another person hides, from their boxes alone.

A camera at head or chest height sees the walkers of a group one behind the
other: the nearer person's box hides part of the farther one's, and the
detector's box of the farther person often ends where the nearer one begins.
The tracker uses this to keep such a person's feet where they are, and the
technician's view check to say how often people overlap at a line.
Nearer means the box reaches lower in the image (its feet are closer to the
camera on a floor seen from above the heads); only ratios of box areas are
used, so the measure is the same at any resolution and any distance.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["cover_by_nearer", "feet_hidden", "hidden_fraction"]

F64 = npt.NDArray[np.float64]


def cover_by_nearer(boxes: npt.ArrayLike) -> F64:
    """``cover[i, j]``: the share of box ``i``'s area that box ``j`` covers where ``j`` is nearer, else 0."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w = np.clip(np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1]), 0, None)
    area = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1e-9)
    nearer = b[None, :, 3] > b[:, None, 3]
    cover: F64 = np.clip(np.nan_to_num(np.where(nearer, w * h / area[:, None], 0.0), nan=0.0), 0.0, 1.0)
    return cover


def hidden_fraction(boxes: npt.ArrayLike) -> F64:
    """For each box ``[x1, y1, x2, y2]``, the largest share of its area a single nearer box covers (0..1).

    The largest single cover, not the union: two people beside each other in front of a third rarely hide
    the same part of them, and the maximum never over-states what one walker in front hides.
    """
    cover = cover_by_nearer(boxes)
    out: F64 = cover.max(axis=1) if cover.size else np.zeros(cover.shape[0])
    return out


def feet_hidden(boxes: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """For each box, whether a nearer box covers the middle of its bottom edge.

    Such a box ends where the person in front begins, not at the feet: its height and foot point say
    nothing about where the person stands.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if b.shape[0] < 2:
        return np.zeros(b.shape[0], dtype=bool)
    fx, fy = (b[:, 0] + b[:, 2]) / 2, b[:, 3]
    covers = ((b[None, :, 0] < fx[:, None]) & (fx[:, None] < b[None, :, 2])
              & (b[None, :, 1] < fy[:, None]) & (fy[:, None] < b[None, :, 3]))
    out: npt.NDArray[np.bool_] = np.asarray(covers.any(axis=1), dtype=bool)
    return out
