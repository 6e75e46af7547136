"""``fusion-ros bench --json`` prints valid JSON with the fields the README table uses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SHIPPED = str(Path(__file__).resolve().parents[2] / "models" / "fusion_lite.onnx")


def test_bench_prints_json() -> None:
    out = subprocess.run([sys.executable, "-m", "fusion_ros.cli", "bench", "--json", "--models", "lite", "--backends",
                          "onnxruntime", "--sizes", "64x96", "--runs", "5", "--warmup", "1"],
                         capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    assert data["machine"]["cores"] >= 1
    (row,) = data["results"]
    assert row["backend"] == "onnxruntime" and row["height"] == 64 and row["width"] == 96
    assert row["median_ms"] > 0 and row["fps"] > 0 and row["peak_rss_mb"] > 0 and row["memory_on"] is True


def test_bench_reports_the_spread_over_processes_and_the_ratio_to_another_command() -> None:
    out = subprocess.run([sys.executable, "-m", "fusion_ros.cli", "bench", "--json", "--models", "lite", "--backends",
                          "onnxruntime", "--sizes", "64x96", "--runs", "5", "--warmup", "1", "--repeat", "2",
                          "--compare-cmd", f"{sys.executable} -c \"import time; time.sleep(0.4)\"", "--compare-frames", "2"],
                         capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    (row,) = data["results"]
    lo, med, hi = row["median_ms_min_median_max"]
    assert row["processes"] == 2 and lo <= med <= hi
    cmp_lo, cmp_med, cmp_hi = data["compare"]["ms_per_frame_min_median_max"]
    assert data["compare"]["runs"] == 2 and cmp_lo >= 200          # 0.4 s per run over 2 frames
    assert row["compare_ratio"] == round(cmp_med / row["median_ms"], 1) > 1


def test_bench_pairs_each_model_with_the_first_repeat_by_repeat() -> None:
    out = subprocess.run([sys.executable, "-m", "fusion_ros.cli", "bench", "--json", "--models", "lite", SHIPPED,
                          "--backends", "onnxruntime", "--sizes", "64x96", "--runs", "5", "--warmup", "1", "--repeat", "2"],
                         capture_output=True, text=True, check=True).stdout
    first, second = json.loads(out)["results"]
    assert "time_ratio_to_first_model" not in first
    ratio = second["time_ratio_to_first_model"]
    lo, med, hi = ratio["per_repeat_min_median_max"]
    assert ratio["model"] == "lite" and 0 < lo <= med <= hi     # the same graph twice: a ratio near 1 on a quiet machine
