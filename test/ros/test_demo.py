"""``fusion-ros demo`` end to end (node + player + recorder over DDS), small and fast."""

from __future__ import annotations

import json

import cv2
import pytest

pytestmark = pytest.mark.ros


def test_demo_writes_outputs(tmp_path):
    from fusion_ros.tools.demo import run_demo

    summary = run_demo(out=tmp_path, frames=8, rgb_hz=10.0, thermal_hz=7.0,
                       params={"inference_size": [160, 120], "threads": 1, "backend": "onnxruntime"})
    assert summary["fused_frames_received"] >= 7
    strip = cv2.imread(str(tmp_path / "strip.png"))
    assert strip.shape == (480, 640 * 3, 3)
    cap = cv2.VideoCapture(str(tmp_path / "fused.mp4"))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == summary["fused_frames_received"]
    data = json.loads((tmp_path / "summary.json").read_text())
    assert data["diagnostics"]["backend"] == "onnxruntime" and int(data["diagnostics"]["fused_frames"]) >= 7
