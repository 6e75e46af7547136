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
    # The ratio comes from unrounded times, the printed spread is rounded: equal to within the last digit.
    assert abs(row["compare_ratio"] - cmp_med / row["median_ms"]) <= 0.051 and row["compare_ratio"] > 1


def test_bench_takes_the_time_per_frame_a_compare_command_reports() -> None:
    """A command whose last line is JSON with ms_per_frame timed itself (no start-up); its number is the one used."""
    report = "import json, time; time.sleep(0.3); print('warming up'); print(json.dumps({'ms_per_frame': 250.0}))"
    out = subprocess.run([sys.executable, "-m", "fusion_ros.cli", "bench", "--json", "--models", "lite", "--backends",
                          "onnxruntime", "--sizes", "64x96", "--runs", "5", "--warmup", "1", "--repeat", "2",
                          "--compare-cmd", f"{sys.executable} -c \"{report}\""],
                         capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    assert data["compare"]["ms_per_frame_min_median_max"] == [250.0, 250.0, 250.0]
    assert data["compare"]["timing"] == "ms_per_frame reported by the command"
    (row,) = data["results"]
    assert row["compare_ratio"] == round(250.0 / row["median_ms"], 1)


def test_ifcnn_peer_times_its_network_and_fuses_to_a_gray_image() -> None:
    import torch

    from fusion_ros.tools.ifcnn_peer import IFCNNMax, fuse

    out = fuse(IFCNNMax().eval(), torch.rand(1, 1, 20, 28), torch.rand(1, 1, 20, 28))
    assert out.shape == (1, 1, 20, 28) and 0.0 <= float(out.min()) <= float(out.max()) <= 1.0
    line = subprocess.run([sys.executable, "-m", "fusion_ros.tools.ifcnn_peer", "--size", "32x48", "--frames", "2"],
                          capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    report = json.loads(line)
    assert report["ms_per_frame"] > 0 and report["size"] == [32, 48]


def test_bench_pairs_each_model_with_the_first_repeat_by_repeat() -> None:
    out = subprocess.run([sys.executable, "-m", "fusion_ros.cli", "bench", "--json", "--models", "lite", SHIPPED,
                          "--backends", "onnxruntime", "--sizes", "64x96", "--runs", "5", "--warmup", "1", "--repeat", "2"],
                         capture_output=True, text=True, check=True).stdout
    first, second = json.loads(out)["results"]
    assert "time_ratio_to_first_model" not in first
    ratio = second["time_ratio_to_first_model"]
    lo, med, hi = ratio["per_repeat_min_median_max"]
    assert ratio["model"] == "lite" and 0 < lo <= med <= hi     # the same graph twice: a ratio near 1 on a quiet machine
