"""The TFLite runtime and the Edge TPU delegate: which one is installed, and whether the TPU answers.

ai-edge-litert is used where pip installs it; Mendel's ``tflite_runtime`` has the
same ``Interpreter``/``load_delegate`` API and is the fallback. Probing the Edge
TPU loads its delegate and nothing else, so an absent accelerator is found
before its model is even looked for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

EDGETPU_LIB = "libedgetpu.so.1"


class DetectorError(RuntimeError):
    pass


def load_runtime() -> tuple[Any, Callable[..., Any], str]:
    """``(Interpreter, load_delegate, name)``: ai-edge-litert, else Mendel's tflite_runtime."""
    try:
        from ai_edge_litert.interpreter import Interpreter, load_delegate

        return Interpreter, load_delegate, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import (
            Interpreter,
            load_delegate,
        )

        return Interpreter, load_delegate, "tflite_runtime"
    except ImportError:
        raise DetectorError(
            "no TFLite runtime: install ai-edge-litert (pip) or python3-tflite-runtime (Mendel)"
        ) from None


def runtime_name() -> str:
    try:
        return load_runtime()[2]
    except DetectorError:
        return "none"


def edgetpu_devices() -> list[dict[str, str]]:
    """Attached Edge TPUs as pycoral lists them; empty if pycoral is not installed.

    pycoral is Coral's own package (python3-pycoral on Mendel); it is optional.
    """
    try:
        from pycoral.utils.edgetpu import list_edge_tpus

        return [dict(d) for d in list_edge_tpus()]
    except Exception:
        return []


def probe_edgetpu(device: str) -> str | None:
    """Try to open the Edge TPU delegate; ``None`` if it works, otherwise the reason."""
    try:
        _, load_delegate, _ = load_runtime()
        load_delegate(EDGETPU_LIB, {"device": device} if device else {})
        return None
    except DetectorError as exc:
        return str(exc)
    except (OSError, ValueError, RuntimeError) as exc:
        return f"{EDGETPU_LIB} could not be loaded for device {device!r}: {exc}"
