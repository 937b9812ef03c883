"""One rule for naming what belongs to a camera, written once.

A device with one camera (no ``[[cameras]]``) has the camera ``main``, and
everything of it keeps the name single-camera builds gave it: the counter's
``state`` key, privacy's saved buckets, the record ids ``site/device/...``, the
frame ring's segment, a chart's ``line:door``. Any other camera adds its name:
``state@front``, ``site/device/front/...``, ``front/line:door``. Keys and files
written before cameras existed are read as they are, never migrated.
"""

from __future__ import annotations

from edgecount_core.messages import DEFAULT_CAMERA

__all__ = ["camera_of", "prefixed", "scoped"]


def scoped(base: str, camera: str, sep: str = "@") -> str:
    """``base`` for the default camera, ``base{sep}camera`` for any other (``state@front``)."""
    return base if camera == DEFAULT_CAMERA else f"{base}{sep}{camera}"


def prefixed(name: str, camera: str, sep: str = "/") -> str:
    """``name`` for the default camera, ``camera{sep}name`` for any other (``front/line:door``)."""
    return name if camera == DEFAULT_CAMERA else f"{camera}{sep}{name}"


def camera_of(scoped_name: str, sep: str = "@") -> str:
    """The camera a :func:`scoped` name belongs to (the default camera when it carries none)."""
    _, found, camera = scoped_name.partition(sep)
    return camera if found and camera else DEFAULT_CAMERA
