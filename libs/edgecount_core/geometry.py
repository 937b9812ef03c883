"""Plane geometry for counting: lines and polygon zones in normalised or pixel units.

Conventions (shared with the configuration and ``--line``): coordinates are
``(x, y)`` with the origin top-left and y pointing down. A configured shape is
normalised (0..1 of the frame) and :meth:`Line.to_pixels` binds it to a frame
size. ``in`` means going from the negative to the positive side of
``cross(B - A, P - A)``, i.e. from left to right as seen looking from A to B
on screen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import attrs

__all__ = ["Line", "PixelLine", "PixelPolygon", "Point", "Polygon", "bottom_centre"]

Point = tuple[float, float]


def bottom_centre(x1: float, y1: float, x2: float, y2: float) -> Point:
    """The point that represents a person: the middle of the box's bottom edge (their feet)."""
    return ((x1 + x2) / 2.0, y2)


def _check_unit(name: str, p: Point) -> None:
    for v in p:
        if not (math.isfinite(v) and 0.0 <= v <= 1.0):
            raise ValueError(f"{name}: coordinate {v!r} is outside 0..1 (use normalised coordinates: 0,0 is the top "
                             "left of the picture, 1,1 the bottom right)")


@attrs.frozen
class Line:
    """A counting line from ``a`` to ``b`` in normalised coordinates."""

    name: str
    a: Point
    b: Point

    def __attrs_post_init__(self) -> None:
        _check_unit(f"line {self.name!r}", self.a)
        _check_unit(f"line {self.name!r}", self.b)
        if self.a == self.b:
            raise ValueError(f"line {self.name!r}: a and b are the same point (give two different ends)")

    def in_heading(self) -> str:
        """Which way a person walks to be counted ``in``, in screen words: ``down``, ``up-left``, ...

        ``in`` crosses from the left of A→B to its right (seen on screen, y down), along ``(-dy, dx)``."""
        nx, ny = -(self.b[1] - self.a[1]), self.b[0] - self.a[0]
        angle = math.degrees(math.atan2(ny, nx)) % 360  # 0 = right, 90 = down (y grows downwards)
        names = ("right", "down-right", "down", "down-left", "left", "up-left", "up", "up-right")
        return names[round(angle / 45) % 8]

    def flipped(self) -> Line:
        """The same segment counted the other way round: ``in`` and ``out`` swap."""
        return Line(self.name, self.b, self.a)

    def to_pixels(self, width: int, height: int) -> PixelLine:
        return PixelLine(
            name=self.name,
            a=(self.a[0] * width, self.a[1] * height),
            b=(self.b[0] * width, self.b[1] * height),
            width=width,
            height=height,
        )


@attrs.frozen
class PixelLine:
    """A line bound to a frame size, in pixels."""

    name: str
    a: Point
    b: Point
    width: int
    height: int

    @property
    def length(self) -> float:
        return math.hypot(self.b[0] - self.a[0], self.b[1] - self.a[1])

    def signed_distance(self, p: Point) -> float:
        """Distance of ``p`` from the infinite line; positive on the ``in`` (right-hand) side."""
        dx, dy = self.b[0] - self.a[0], self.b[1] - self.a[1]
        return (dx * (p[1] - self.a[1]) - dy * (p[0] - self.a[0])) / self.length

    def crossing_parameter(self, p: Point, q: Point) -> float | None:
        """Where the move ``p -> q`` meets the infinite line, as the fraction t along A->B.

        ``None`` when the move is parallel to the line.
        """
        rx, ry = self.b[0] - self.a[0], self.b[1] - self.a[1]
        sx, sy = q[0] - p[0], q[1] - p[1]
        denom = rx * sy - ry * sx
        if abs(denom) < 1e-12:
            return None
        return ((p[0] - self.a[0]) * sy - (p[1] - self.a[1]) * sx) / denom

    def reachable_depth(self) -> float:
        """The smaller of the farthest distances a point inside the frame can reach on each side.

        A hysteresis band wider than this could never be left on one side, so the
        counter caps its band with it (lines along the frame edge still count).
        """
        corners = ((0.0, 0.0), (self.width, 0.0), (0.0, self.height), (self.width, self.height))
        dists = [self.signed_distance(c) for c in corners]
        return min(max(dists), -min(dists))


@attrs.frozen
class Polygon:
    """A zone as a polygon of at least three normalised points."""

    name: str
    points: tuple[Point, ...]

    def __attrs_post_init__(self) -> None:
        if len(self.points) < 3:
            raise ValueError(f"zone {self.name!r}: a polygon needs at least 3 points")
        for p in self.points:
            _check_unit(f"zone {self.name!r}", p)

    def to_pixels(self, width: int, height: int) -> PixelPolygon:
        return PixelPolygon(
            name=self.name, points=tuple((x * width, y * height) for x, y in self.points)
        )


@attrs.frozen
class PixelPolygon:
    name: str
    points: tuple[Point, ...]

    def contains(self, p: Point) -> bool:
        """Even-odd rule point-in-polygon test."""
        inside = False
        pts: Sequence[Point] = self.points
        n = len(pts)
        x, y = p
        for i in range(n):
            x1, y1 = pts[i]
            x2, y2 = pts[(i + 1) % n]
            if (y1 > y) != (y2 > y):
                x_at = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
                if x < x_at:
                    inside = not inside
        return inside

    def boundary_distance(self, p: Point) -> float:
        """Shortest distance from ``p`` to the polygon's edges."""
        best = math.inf
        n = len(self.points)
        for i in range(n):
            ax, ay = self.points[i]
            bx, by = self.points[(i + 1) % n]
            dx, dy = bx - ax, by - ay
            seg2 = dx * dx + dy * dy
            t = 0.0 if seg2 == 0 else max(0.0, min(1.0, ((p[0] - ax) * dx + (p[1] - ay) * dy) / seg2))
            best = min(best, math.hypot(p[0] - (ax + t * dx), p[1] - (ay + t * dy)))
        return best

    def signed_depth(self, p: Point) -> float:
        """Distance to the boundary, positive inside the zone and negative outside."""
        d = self.boundary_distance(p)
        return d if self.contains(p) else -d
