"""Print the inference stage's detections for the first frames of a clip, one JSON line a frame.

Run by tests/system/test_arm64.py with the installed package's libraries on each architecture (never packaged):
the detector is built as the inference service builds it, from the configuration's ``[inference]`` and its
asset store, so both sides run the same model, pre-processing and decoding.
"""

from __future__ import annotations

import json
import sys

import cv2

from edgecount.assets.obtain import AssetStore
from edgecount.detection.model_files import resolve_model
from edgecount.detection.tiling import configured_detector
from edgecount.runtime.settings import load_config


def main() -> None:
    config, clip, frames = sys.argv[1], sys.argv[2], int(sys.argv[3])
    cfg = load_config(config)
    det = configured_detector(cfg.inference, resolve_model(cfg.inference.model, AssetStore.for_config(cfg)), "cpu")
    video = cv2.VideoCapture(clip)
    for seq in range(frames):
        ok, frame = video.read()
        if not ok:
            raise SystemExit(f"{clip}: ended at frame {seq}")
        found, _ = det.detect(frame)
        print(json.dumps({"frame": seq, "boxes": [[round(float(v), 3) for v in box] for box in found.boxes],
                          "scores": [round(float(v), 5) for v in found.scores],
                          "classes": [int(c) for c in found.classes]}), flush=True)


if __name__ == "__main__":
    main()
