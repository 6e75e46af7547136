"""The keep-up benchmark over three processes accounts for every RGB frame: answered or counted as dropped."""

from __future__ import annotations

import pytest

pytest.importorskip("rclpy", reason="the stream benchmark needs rclpy (ros-jazzy-rclpy wheels)")

from fusion_ros.tools.stream_bench import run_stream_bench  # noqa: E402

pytestmark = pytest.mark.ros


def test_keep_up_run_reports_rates_drops_latency_and_memory():
    r = run_stream_bench(rgb_hz=20.0, thermal_hz=10.0, duration_s=4.0, width=320, height=240,
                         node_params={"threads": 1, "inference_size": [160, 120]})
    assert r["rgb_sent"] == 80 and r["answered"] > 20
    # Every RGB frame is either answered or counted by the node as dropped (best-effort DDS may lose a couple).
    assert 0 <= r["unaccounted_rgb"] <= 3, r
    assert r["fused_frames"] >= r["answered"] - r["passthrough_frames"] - 3
    assert r["inference_ms_median"] > 0 and r["keep_up_ratio"] > 0
    assert r["latency_ms_p50"] <= r["latency_ms_p95"] <= r["latency_ms_max"]
    assert r["rss_mb_last"] > 50 and r["latency_over_time"]
