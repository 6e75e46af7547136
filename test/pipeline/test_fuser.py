"""Fuser over a real engine backend (ONNX Runtime on the shipped lite model) and the procedural scene."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fusion_ros.errors import ConfigError, ShapeError
from fusion_ros.pipeline import Fuser, FuserConfig
from fusion_ros.tools.scene import NightScene, SceneConfig, pedestrian_boxes

pytest.importorskip("onnxruntime", reason="the Fuser tests run the shipped model with ONNX Runtime")


@pytest.fixture(scope="module")
def backend():
    from fusion_ros.engine import EngineConfig, create_backend
    return create_backend(EngineConfig(backend="onnxruntime", threads=1))


class _Counting:
    """Wraps a backend to count memory resets (the real backend still does the work)."""

    def __init__(self, inner):
        self.inner, self.resets = inner, 0

    def infer(self, t, v, use_memory=True):
        return self.inner.infer(t, v, use_memory=use_memory)

    def reset_memory(self):
        self.resets += 1
        self.inner.reset_memory()


def _luma(rgb):
    return rgb.astype(np.float32) @ np.float32([0.299, 0.587, 0.114])


def test_output_shape_dtype_any_thermal_size(backend):
    fuser = Fuser(backend)
    rgb = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    for th in (np.zeros((60, 80), np.uint16), np.zeros((120, 160), np.uint8), np.zeros((97, 131), np.float32)):
        out = fuser.step(th, rgb, stamp=0.0)
        assert out.shape == (120, 160, 3) and out.dtype == np.uint8


def test_inference_size_resized_back(backend):
    fuser = Fuser(backend, FuserConfig(inference_size=(160, 128)))
    scene = NightScene(SceneConfig(frames=1, rgb_size=(320, 240), thermal_size=(160, 128)))
    th, rgb, _ = next(iter(scene))
    out = fuser.step(th, rgb, 0.0)
    assert out.shape == (240, 320, 3)


def test_pedestrians_visible_in_fused_where_rgb_is_dark(backend):
    """The product's point: warm people, near-invisible in the foggy RGB, stand out in the fused image."""
    cfg = SceneConfig(frames=3, rgb_size=(320, 240), thermal_size=(160, 128))
    fuser = Fuser(backend)
    for th, rgb, t in NightScene(cfg):
        fused = fuser.step(th, rgb, t)
    person = cv2.resize(th, (320, 240)) > 9000          # hot body pixels, from the thermal truth
    for x0, y0, x1, y1 in pedestrian_boxes(cfg, t, (320, 240)):
        box = (slice(y0, y1), slice(x0, x1))
        m = person[box]
        assert m.any() and (~m).any()
        rgb_c = _luma(rgb)[box][m].mean() - _luma(rgb)[box][~m].mean()
        fused_c = _luma(fused)[box][m].mean() - _luma(fused)[box][~m].mean()
        assert fused_c > max(3 * abs(rgb_c), 30), (rgb_c, fused_c)


def test_memory_reset_on_gap_resolution_and_reset(backend):
    b = _Counting(backend)
    fuser = Fuser(b, FuserConfig(memory_reset_gap_s=0.5))
    th = np.zeros((32, 32), np.uint16)
    rgb = np.zeros((64, 64, 3), np.uint8)
    fuser.step(th, rgb, 0.0)
    fuser.step(th, rgb, 0.1)
    assert b.resets == 0
    fuser.step(th, rgb, 1.0)            # gap 0.9 s
    assert b.resets == 1
    fuser.step(th, rgb, 0.5)            # backwards
    assert b.resets == 2
    fuser.step(th, np.zeros((32, 48, 3), np.uint8), 0.53)   # resolution change
    assert b.resets == 3
    fuser.reset()
    assert fuser.agc.state.low is None
    fuser.step(th, rgb, 0.6)            # the memory restarts with the next pair, on the thread that infers
    assert b.resets == 4


def test_errors(backend):
    with pytest.raises(ConfigError, match="inference_size"):
        FuserConfig(inference_size=(0, 64))
    with pytest.raises(ConfigError, match="memory_reset_gap_s"):
        FuserConfig(memory_reset_gap_s=0)
    with pytest.raises(ConfigError, match="agc_low_percentile"):
        FuserConfig(agc_low_percentile=70)
    with pytest.raises(ShapeError, match="rgb must be"):
        Fuser(backend).step(np.zeros((8, 8), np.uint16), np.zeros((8, 8), np.uint8))
