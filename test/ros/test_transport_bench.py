"""Cross-process transport benchmark: real publisher/subscriber processes over Fast DDS (no mocks)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fusion_ros.errors import ConfigError
from fusion_ros.tools.transport_bench import DEFAULT_PROFILE, run_transport_bench

pytestmark = pytest.mark.ros

FIELDS = ("frames_sent", "frames_received", "delivered_fraction", "latency_ms_median", "latency_ms_p95",
          "rate_hz_sent", "rate_hz_effective", "malformed", "profile", "domain_id")


def test_shm_profile_delivers_images_across_processes():
    r = run_transport_bench(frames=20, rate_hz=30.0, profile=DEFAULT_PROFILE)
    for k in FIELDS:
        assert k in r, k
    assert r["frames_sent"] == 20
    assert r["delivered_fraction"] > 0.5, r
    assert r["malformed"] == 0
    # Same host clock: the one-way latency is positive and far below a frame period's multiple.
    assert 0 < r["latency_ms_median"] <= r["latency_ms_p95"] < 1000, r
    assert r["rate_hz_sent"] == pytest.approx(30.0, rel=0.2)
    json.dumps(r, allow_nan=False)


def test_cli_prints_both_settings_as_json():
    out = subprocess.run([sys.executable, "-m", "fusion_ros.cli", "bench", "--transport", "--frames", "10"],
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    rep = json.loads(out.stdout)
    assert "cpu" in rep["machine"] and len(rep["machine"]["load_average_1_5_15"]) == 3
    assert set(rep["transport"]) == {"default", "shm_profile"}
    assert rep["transport"]["default"]["profile"] is None
    assert rep["transport"]["shm_profile"]["profile"].endswith("fastdds_shm.xml")
    for r in rep["transport"].values():
        assert r["frames_sent"] == 10
        assert 0.0 <= r["delivered_fraction"] <= 1.0
    assert rep["transport"]["shm_profile"]["delivered_fraction"] > 0.5


def test_bad_settings_name_the_parameter(tmp_path):
    with pytest.raises(ConfigError, match="profile"):
        run_transport_bench(frames=5, profile=str(tmp_path / "missing.xml"))
    with pytest.raises(ConfigError, match="rate_hz"):
        run_transport_bench(frames=5, rate_hz=0.0)


def test_through_node_returns_fused_frames_with_rgb_stamps():
    r = run_transport_bench(frames=15, rate_hz=15.0, profile=DEFAULT_PROFILE, through_node=True)
    # Matched by the RGB stamp: a fused frame counts only if it carries the header of a frame the player sent.
    assert r["delivered_fraction"] > 0.5, r
    assert r["latency_ms_median"] > 0
    assert r["node"]["mode"] == "fusing" and int(r["node"]["fused_frames"]) >= 8, r["node"]
    assert float(r["node"]["latency_ms_median"]) > 0
