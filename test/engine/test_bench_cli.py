"""``fusion-ros bench --json`` prints valid JSON with the fields the README table uses."""

from __future__ import annotations

import json
import subprocess
import sys


def test_bench_prints_json() -> None:
    out = subprocess.run([sys.executable, "-m", "fusion_ros.cli", "bench", "--json", "--models", "lite", "--backends",
                          "onnxruntime", "--sizes", "64x96", "--runs", "5", "--warmup", "1"],
                         capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    assert data["machine"]["cores"] >= 1
    (row,) = data["results"]
    assert row["backend"] == "onnxruntime" and row["height"] == 64 and row["width"] == 96
    assert row["median_ms"] > 0 and row["fps"] > 0 and row["peak_rss_mb"] > 0 and row["memory_on"] is True
