"""Thermal AGC and homography registration."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_ros.errors import ConfigError, ShapeError
from fusion_ros.pipeline.agc import AGCConfig, AGCState, ThermalAGC, thermal_agc
from fusion_ros.pipeline.registration import Registration, RegistrationConfig, warp_thermal


class TestThermalAGC:
    def test_8bit_passthrough(self):
        x = np.arange(256, dtype=np.uint8).reshape(16, 16)
        out = ThermalAGC()(x)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, x / 255.0, atol=1e-7)

    def test_percentiles_map_to_unit_range(self):
        x = np.random.default_rng(0).integers(7000, 9000, (64, 80)).astype(np.uint16)
        out = ThermalAGC(AGCConfig(agc_low_percentile=0, agc_high_percentile=100))(x)
        assert out.min() == pytest.approx(0.0, abs=0.02) and out.max() == pytest.approx(1.0, abs=0.02)

    def test_fixed_range(self):
        x = np.array([[1000, 2000, 3000, 4000]], np.uint16)
        out = ThermalAGC(AGCConfig(thermal_range=(2000.0, 3000.0)))(x)
        np.testing.assert_allclose(out, [[0, 0, 1, 1]])

    def test_smoothing_limits_flicker(self):
        """A hot object entering the frame shifts the raw percentiles; the EMA moves the levels slowly."""
        rng = np.random.default_rng(1)
        base = rng.integers(7000, 7500, (64, 64)).astype(np.uint16)
        hot = base.copy()
        hot[:, :16] = 12000
        smooth, raw = ThermalAGC(AGCConfig(agc_smoothing=0.1)), ThermalAGC(AGCConfig(agc_smoothing=1.0))
        for agc in (smooth, raw):
            agc(base)
        d_smooth = np.abs(smooth(hot)[:, 32:] - smooth(base)[:, 32:]).mean()
        d_raw = np.abs(raw(hot)[:, 32:] - raw(base)[:, 32:]).mean()
        assert d_smooth < 0.5 * d_raw

    def test_function_equals_module(self):
        x = np.random.default_rng(2).integers(0, 65535, (32, 32)).astype(np.uint16)
        agc = ThermalAGC()
        a = agc(x)
        b, state = thermal_agc(x, AGCState(), AGCConfig())
        np.testing.assert_array_equal(a, b)
        assert state == agc.state

    def test_errors(self):
        with pytest.raises(ConfigError, match="thermal_range"):
            AGCConfig(thermal_range=(3000.0, 2000.0))
        with pytest.raises(ConfigError, match="agc_high_percentile"):
            AGCConfig(agc_high_percentile=40.0)
        with pytest.raises(ShapeError, match="thermal must be"):
            ThermalAGC()(np.zeros((2, 2, 3), np.uint16))


class TestRegistration:
    def test_identity_is_resize(self):
        x = np.random.default_rng(0).random((256, 320), dtype=np.float32)
        out = warp_thermal(x, (640, 480), RegistrationConfig())
        assert out.shape == (480, 640)
        assert out.mean() == pytest.approx(x.mean(), abs=1e-3)

    def test_translation_moves_a_point(self):
        x = np.zeros((48, 64), np.float32)
        x[10, 20] = 1.0
        h = (1.0, 0.0, 5.0, 0.0, 1.0, -3.0, 0.0, 0.0, 1.0)   # +5 px right, 3 px up on the output grid
        out = Registration(RegistrationConfig(homography=h)).warp(x, (64, 48))
        assert np.unravel_index(out.argmax(), out.shape) == (7, 25)

    def test_homography_refers_to_rgb_size_at_other_inference_size(self):
        x = np.zeros((48, 64), np.float32)
        x[10, 20] = 1.0
        h = (1.0, 0.0, 10.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)   # 10 RGB px at 128x96 = 5 px at 64x48
        out = warp_thermal(x, (64, 48), RegistrationConfig(homography=h), ref_size=(128, 96))
        assert np.unravel_index(out.argmax(), out.shape) == (10, 25)

    def test_errors(self):
        with pytest.raises(ConfigError, match="homography needs 9 values"):
            RegistrationConfig(homography=(1.0, 0.0))
        with pytest.raises(ConfigError, match="singular"):
            RegistrationConfig(homography=(0.0,) * 9)
