"""A person's colours, so that two people who pass each other keep their identities.

Motion alone cannot tell who is who when two walkers overlap: both boxes
fit both predictions. What the tracker lacks is what a person sees first,
the colour of the clothes. This module reduces a detection to two small
colour histograms, torso and legs, sampled on a fixed grid inside the box
(so the cost does not grow with the person's size), and compares two of them
with the Bhattacharyya coefficient (1 = same colours, 0 = nothing shared).

The histogram bins chromaticity, not raw RGB, plus a coarse brightness, so
a person who walks into shade keeps most of the same bins. It is no
re-identification network: it only has to separate the two or three people
near one prediction, and it costs well under a millisecond per frame.

Pure: the frame comes in as an array, nothing is read or kept.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["FEATURE_SIZE", "describe", "similarity"]

F32 = npt.NDArray[np.float32]

_GRID = 12
"""Samples per side of each region: 144 pixels per histogram."""
_LUMA_BINS = 4
_OPPONENT_BINS = 3
_BINS = _LUMA_BINS * _OPPONENT_BINS * _OPPONENT_BINS
FEATURE_SIZE = 2 * _BINS
"""Torso histogram, then legs histogram."""

# Regions as fractions of the box: the head and feet are left out (hair, floor).
_REGIONS = ((0.18, 0.50), (0.55, 0.90))
_INSET_X = 0.25
_OPPONENT_EDGES = np.array([-10.0, 10.0], dtype=np.float32)


def describe(frame: npt.NDArray[np.uint8], boxes: npt.ArrayLike) -> F32:
    """Colour features ``(n, FEATURE_SIZE)`` of boxes ``[x1, y1, x2, y2]`` in a BGR frame (OpenCV's order).

    Each half sums to 1. Samples beyond the frame are taken from its edge; a box less than a pixel wide
    or high gives zeros (no colours, which never veto a match).
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    n = b.shape[0]
    if n == 0:
        return np.zeros((0, FEATURE_SIZE), dtype=np.float32)
    img = frame if frame.ndim == 3 else frame[:, :, None].repeat(3, axis=2)
    h, w = img.shape[:2]
    steps = (np.arange(_GRID) + 0.5) / _GRID
    bw, bh = b[:, 2:3] - b[:, 0:1], b[:, 3:4] - b[:, 1:2]
    xs = np.clip((b[:, 0:1] + bw * (_INSET_X + (1 - 2 * _INSET_X) * steps)).astype(np.intp), 0, w - 1)
    bins = []
    for top, bottom in _REGIONS:
        ys = np.clip((b[:, 1:2] + bh * (top + (bottom - top) * steps)).astype(np.intp), 0, h - 1)
        bins.append(_bin(img[ys[:, :, None], xs[:, None, :]].reshape(n, -1, 3)))
    # One bincount for every box and region: each (box, region) gets its own run of _BINS counters.
    idx = np.stack(bins, axis=1) + (np.arange(2 * n) * _BINS).reshape(n, 2, 1)
    counts = np.bincount(idx.ravel(), minlength=2 * n * _BINS).astype(np.float32).reshape(n, 2, _BINS)
    out = counts / np.float32(_GRID * _GRID)
    out[((bw < 1) | (bh < 1)).ravel()] = 0.0
    return out.reshape(n, FEATURE_SIZE)


def _bin(px: npt.NDArray[np.uint8]) -> npt.NDArray[np.intp]:
    """Histogram bin of every pixel ``(..., 3)`` BGR."""
    p = px.astype(np.float32)
    luma = np.minimum((p.sum(axis=-1) / (3 * 256.0) * _LUMA_BINS).astype(np.intp), _LUMA_BINS - 1)
    # Opponent colours: red-green and yellow-blue, each "clearly one way", "neutral", "clearly the other".
    o1 = np.digitize(p[..., 2] - p[..., 1], _OPPONENT_EDGES)
    o2 = np.digitize(p[..., 2] + p[..., 1] - 2 * p[..., 0], _OPPONENT_EDGES * 2)
    out: npt.NDArray[np.intp] = (luma * _OPPONENT_BINS + o1) * _OPPONENT_BINS + o2
    return out


def similarity(a: npt.ArrayLike, b: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Pairwise Bhattacharyya coefficient of features ``a (n, F)`` and ``b (m, F)``, averaged over the halves.

    A row of zeros (no feature) is similar to everything (1.0): it must never veto a match.
    """
    aa = np.sqrt(np.asarray(a, dtype=np.float64).reshape(-1, FEATURE_SIZE))
    bb = np.sqrt(np.asarray(b, dtype=np.float64).reshape(-1, FEATURE_SIZE))
    sim = (aa @ bb.T) / 2.0
    missing = (aa.sum(axis=1)[:, None] == 0) | (bb.sum(axis=1)[None, :] == 0)
    out: npt.NDArray[np.float64] = np.where(missing, 1.0, sim)
    return out
