"""mAP@0.5 known answers and the frozen SSD-MobileNet-v2 detector on a real MSRS image."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from fusion_ros.errors import ConfigError, FusionError
from fusion_ros.eval import detection as D

SHARED = Path(os.environ.get("FUSION_ROS_SHARED", Path(__file__).resolve().parents[2] / ".." / "shared"))
MSRS = SHARED / "data" / "pairs" / "dev" / "msrs"


def test_ap_known_answers():
    gts = {"a": [(0, 0, 10, 10)], "b": [(0, 0, 10, 10)]}
    perfect = [("a", 0.9, (0, 0, 10, 10)), ("b", 0.8, (1, 1, 10, 10))]
    assert D.average_precision(perfect, gts) == pytest.approx(1.0)
    # A false positive ranked first: precision 0, 1/2, 2/3 at recalls 0, .5, 1 -> AP = .5*.667 + .5*.667.
    fp_first = [("a", 0.95, (50, 50, 60, 60))] + perfect
    assert D.average_precision(fp_first, gts) == pytest.approx(2 / 3)
    # Only half the objects found, with a duplicate that counts as a false positive.
    half = [("a", 0.9, (0, 0, 10, 10)), ("a", 0.8, (0, 0, 10, 10))]
    assert D.average_precision(half, gts) == pytest.approx(0.5)
    assert D.average_precision([], gts) == 0.0
    assert np.isnan(D.average_precision([], {"a": []}))
    # IoU 0.25 < 0.5 does not match.
    assert D.average_precision([("a", 0.9, (5, 0, 15, 10))], {"a": [(0, 0, 10, 10)]}) == 0.0


def test_evaluate_map_per_class():
    labels = {"x": [(0, (0, 0, 10, 10)), (2, (20, 20, 40, 40))]}
    dets = {"x": [D.Detection(0, 0.9, (0, 0, 10, 10))]}
    res = D.evaluate_map(dets, labels)
    assert res["person"] == 1.0 and res["car"] == 0.0 and np.isnan(res["bicycle"])
    assert res["mAP"] == pytest.approx(0.5)


def test_read_yolo_labels(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("0 0.5 0.5 0.2 0.4\n\n2 0.1 0.1 0.2 0.2\n")
    boxes = D.read_yolo_labels(p, 100, 50)
    assert boxes[0][0] == 0 and boxes[0][1] == pytest.approx((40, 15, 60, 35))
    assert boxes[1][1] == pytest.approx((0, 0, 20, 10))
    assert D.read_yolo_labels(tmp_path / "none.txt", 10, 10) == []
    p.write_text("0 0.5 0.5\n")
    with pytest.raises(FusionError, match="cx cy w h"):
        D.read_yolo_labels(p, 10, 10)
    with pytest.raises(ConfigError, match="input_size"):
        D.SSDMobileNetConfig(input_size=10)


def test_ssd_detects_people_on_msrs_visible():
    try:
        D.find_ssd_files()
    except FusionError as exc:
        pytest.skip(f"detector weights unavailable: {exc}")
    img_path = MSRS / "vi" / "00537D.png"
    if not img_path.is_file():
        pytest.skip(f"shared data missing: {img_path} (set FUSION_ROS_SHARED)")
    rgb = cv2.cvtColor(cv2.imread(str(img_path)), cv2.COLOR_BGR2RGB)
    det = D.SSDMobileNetDetector()
    dets = det(rgb)
    assert all(d.cls in D.CLASSES for d in dets)
    labels = {"00537D": D.read_yolo_labels(MSRS / "labels" / "00537D.txt", rgb.shape[1], rgb.shape[0])}
    res = D.evaluate_map({"00537D": dets}, labels)
    # A daytime scene: the frozen COCO detector finds at least some of the labelled people.
    assert res["person"] > 0.3, res


def test_load_detector_spec():
    with pytest.raises(ConfigError, match="package.module:factory"):
        D.load_detector("nonsense")
    with pytest.raises(ConfigError, match="cannot be loaded"):
        D.load_detector("fusion_ros.eval.detection:no_such_factory")
    with pytest.raises(ConfigError, match="expected a callable"):
        D.load_detector("builtins:list")  # list() gives [], not a detector
