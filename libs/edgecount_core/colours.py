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
    """Colour features ``(n, FEATURE_SIZE)`` of boxes ``[x1, y1, x2, y2]`` in a BGR or RGB frame.

    Each half is normalised to sum 1; a box outside the frame gives zeros.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    out = np.zeros((b.shape[0], FEATURE_SIZE), dtype=np.float32)
    if b.shape[0] == 0:
        return out
    h, w = frame.shape[:2]
    steps = (np.arange(_GRID) + 0.5) / _GRID
    for i, (x1, y1, x2, y2) in enumerate(b):
        bw, bh = x2 - x1, y2 - y1
        if bw < 1 or bh < 1:
            continue
        xs = np.clip((x1 + bw * (_INSET_X + (1 - 2 * _INSET_X) * steps)).astype(np.intp), 0, w - 1)
        for r, (top, bottom) in enumerate(_REGIONS):
            ys = np.clip((y1 + bh * (top + (bottom - top) * steps)).astype(np.intp), 0, h - 1)
            px = frame[ys[:, None], xs[None, :]].reshape(-1, frame.shape[2] if frame.ndim == 3 else 1)
            out[i, r * _BINS:(r + 1) * _BINS] = _histogram(px)
    return out


def _histogram(px: npt.NDArray[np.uint8]) -> F32:
    p = px.astype(np.float32)
    if p.shape[1] < 3:
        p = np.repeat(p[:, :1], 3, axis=1)
    luma = np.minimum((p.sum(axis=1) / (3 * 256.0) * _LUMA_BINS).astype(np.intp), _LUMA_BINS - 1)
    # Opponent colours: red-green and yellow-blue, each "clearly one way", "neutral", "clearly the other".
    o1 = np.digitize(p[:, 2] - p[:, 1], _OPPONENT_EDGES)
    o2 = np.digitize(p[:, 2] + p[:, 1] - 2 * p[:, 0], _OPPONENT_EDGES * 2)
    idx = (luma * _OPPONENT_BINS + o1) * _OPPONENT_BINS + o2
    hist = np.bincount(idx, minlength=_BINS).astype(np.float32)
    s = float(hist.sum())
    return hist / s if s > 0 else hist


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
