"""Face detection with OpenCV's frontal-face Haar cascade, which the
opencv-python 4.x wheel carries (5.x dropped both the cascades and
CascadeClassifier, hence the `<5` pin).

Boxes are in pixels of the image as it is shown: EXIF orientation applied, so
that a phone photo stored on its side is searched upright (the cascade finds
upright faces only) and its boxes match what a browser displays.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

from shared.inference.base import (
    ItemInput,
    ModelOutput,
    PermanentError,
    PostProcessorConfig,
    PostProcessorModel,
    Prediction,
)
from shared.inference.files.images import open_upright

CASCADE_FILE = "haarcascade_frontalface_default.xml"
# OpenCV's documented defaults for faces; 5 neighbours rather than 3 because
# at 3 textured photos (coins, gravel, cells in scikit-image's samples) gave
# faces where there are none.
SCALE_FACTOR = 1.1
MIN_NEIGHBORS = 5

# A Haar cascade gives no probability. What it has is the boosted sum of its
# last stage for each box (`levelWeights`): how far past the last test the
# window got. The score squashes that into 0..1 with a logistic centred where
# faces and false alarms part: on 96 faces of scikit-image's LFW subset the
# sum ran 1.7..13.2 (median 7), on boxes found in its face-free photos
# -1.1..3.9. So 0.5 is a sum of 3, a typical face scores above 0.95, and a
# post-processor's confidence_threshold has something to cut. It orders boxes
# sensibly; it is not a calibrated probability.
SCORE_MIDPOINT = 3.0
SCORE_SLOPE = 1.0


class FaceDetector(PostProcessorModel):
    model_type = "detection"
    name = "opencv-haar-frontalface"

    def __init__(self) -> None:
        import cv2
        from cv2.data import haarcascades

        self.cascade = cv2.CascadeClassifier(haarcascades + CASCADE_FILE)
        if self.cascade.empty():
            raise RuntimeError(f"OpenCV could not load {CASCADE_FILE} from {haarcascades}")
        # One classifier serves every job of the process; OpenCV does not
        # promise that two threads may run it at once (a threaded pool would).
        self.lock = threading.Lock()

    def run(self, item: ItemInput, file: Path | None, config: PostProcessorConfig) -> ModelOutput:
        if file is None:
            raise PermanentError("The item has no file to find faces in.")
        # The kind detected from the bytes at upload, not the client-editable
        # extension.
        if not item.media_type.startswith("image/"):
            raise PermanentError(f"Face detection reads images; this file is {item.media_type!r}.")
        gray = _load_gray(file)
        with self.lock:
            rectangles, _levels, weights = self.cascade.detectMultiScale3(
                gray,
                scaleFactor=SCALE_FACTOR,
                minNeighbors=MIN_NEIGHBORS,
                outputRejectLevels=True,
            )
        boxes = [
            _box(rectangle, float(weight))
            for rectangle, weight in zip(rectangles, weights, strict=True)
        ]
        boxes.sort(key=lambda box: (-box["score"], box["y"], box["x"]))
        height, width = gray.shape
        return ModelOutput(
            raw={"model": self.name, "image": {"width": width, "height": height}, "boxes": boxes},
            # Nothing for the item's text: a detector has no text to give, and
            # a summary ("1 face") would overwrite the item's real text when
            # the post-processor's output_target is `text` or `both`.
            text=None,
            predictions=[
                Prediction(
                    label="face",
                    score=box["score"],
                    coordinates={key: box[key] for key in ("x", "y", "width", "height")},
                )
                for box in boxes
            ],
        )


def _load_gray(file: Path) -> Any:
    """The image as an upright 8-bit grayscale array."""
    import numpy

    return numpy.asarray(open_upright(file, "L"))


def _box(rectangle: Any, weight: float) -> dict[str, Any]:
    x, y, width, height = (int(value) for value in rectangle)
    score = 1 / (1 + math.exp(-SCORE_SLOPE * (weight - SCORE_MIDPOINT)))
    return {
        "x": x,
        "y": y,
        "width": width,
        "height": height,
        "score": round(score, 4),
        "weight": round(weight, 4),
    }
