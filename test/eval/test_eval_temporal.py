"""Flicker and warping error on synthetic motion and on a real dev clip."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from fusion_ros.errors import ConfigError, ShapeError
from fusion_ros.eval import temporal as T

SHARED = Path(os.environ.get("FUSION_ROS_SHARED", Path(__file__).resolve().parents[2] / ".." / "shared"))
CLIP = SHARED / "data" / "video" / "dev" / "0111_1753"


def _moving_clip(n: int = 5, step: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    tex = cv2.GaussianBlur(rng.integers(0, 256, (160, 240)).astype(np.float32), (0, 0), 2.0)
    tex = cv2.normalize(tex, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    big = np.pad(tex, ((0, 0), (0, step * n)), mode="reflect")
    # The camera pans right, so content moves left by ``step`` px per frame.
    return [big[:, t * step:t * step + 200] for t in range(n)]


def test_flow_compensates_a_pan():
    clip = _moving_clip()
    flow = T.compute_flow(clip)
    assert len(flow.maps) == len(clip) - 1
    # Warped previous frame matches the current one far better than the raw previous frame.
    raw = np.abs(clip[2].astype(float) - clip[1]).mean()
    warped = np.abs(clip[2].astype(float) - flow.warp(2, clip[1].astype(float)))[flow.valid[1]].mean()
    assert warped < 0.3 * raw, (warped, raw)
    assert flow.valid[1].mean() > 0.8


def test_visible_input_has_flicker_one_and_brightness_flicker_is_higher():
    clip = _moving_clip(6)
    flow = T.compute_flow(clip)
    assert T.temporal_metrics(clip, clip, flow).flicker == pytest.approx(1.0)
    pulsing = [np.clip(f.astype(int) + (25 if t % 2 else -25), 0, 255).astype(np.uint8) for t, f in enumerate(clip)]
    res = T.temporal_metrics(pulsing, clip, flow)
    assert res.flicker > 3.0
    assert len(res.per_frame_flicker) == len(clip) - 1
    assert res.warping_error > T.temporal_metrics(clip, clip, flow).warping_error


def test_errors():
    clip = _moving_clip(3)
    with pytest.raises(ShapeError):
        T.compute_flow(clip[:1])
    with pytest.raises(ShapeError):
        T.temporal_metrics(clip[:2], clip)
    with pytest.raises(ConfigError, match="preset"):
        T.TemporalConfig(preset="slow")


def test_real_clip_static_source_is_steadier_than_noise():
    if not (CLIP / "vi" / "0000.png").is_file():
        pytest.skip(f"shared data missing: {CLIP} (set FUSION_ROS_SHARED)")
    vi = [cv2.cvtColor(cv2.imread(str(CLIP / "vi" / f"{i:04d}.png")), cv2.COLOR_BGR2RGB) for i in range(4)]
    flow = T.compute_flow(vi, T.TemporalConfig(preset="fast"))
    rng = np.random.default_rng(0)
    noisy = [np.clip(v.astype(int) + rng.integers(-12, 13, v.shape[:2])[..., None], 0, 255).astype(np.uint8)
             for v in vi]
    assert T.temporal_metrics(noisy, vi, flow).flicker > 1.5
