"""The uint8-I/O graph variant gives the float graph's output after the node's own conversions, and its bench runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from fusion_ros.cli import main
from fusion_ros.export.uint8_io import FUSED_U8, VISIBLE_U8, with_uint8_io
from fusion_ros.model.artifact import open_artifact
from fusion_ros.pipeline.fuser import from_chw, to_chw

pytestmark = pytest.mark.onnx

LITE = Path(__file__).resolve().parents[2] / "models" / "fusion_lite.onnx"


def test_uint8_graph_matches_float_graph_plus_conversions():
    model = onnx.load(LITE)
    art = open_artifact(LITE)
    float_graph = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    u8_graph = ort.InferenceSession(with_uint8_io(model).SerializeToString(), providers=["CPUExecutionProvider"])
    assert [i.name for i in u8_graph.get_inputs()] == ["thermal", VISIBLE_U8, "memory"]
    rng = np.random.default_rng(0)
    h, w = 48, 64
    thermal = rng.random((1, 1, h, w), dtype=np.float32)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    memory = np.zeros((1, art.memory_channels, h // art.stride, w // art.stride), np.float32)
    fused, mem_f = float_graph.run(None, {"thermal": thermal, "visible": to_chw(rgb), "memory": memory})
    out, mem_u = u8_graph.run([FUSED_U8, "memory_out"], {"thermal": thermal, VISIBLE_U8: rgb[None], "memory": memory})
    assert out.dtype == np.uint8 and out.shape == (1, h, w, 3)
    # the same arithmetic in another order: at most one level apart, on few pixels
    diff = np.abs(from_chw(fused).astype(np.int16) - out[0].astype(np.int16))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    np.testing.assert_allclose(mem_u, mem_f, atol=1e-5)


def test_uint8_io_bench_prints_both_paths(capsys):
    assert main(["bench", "--uint8-io", "--models", "lite", "--sizes", "48x64", "--runs", "3", "--warmup", "1",
                 "--threads", "1"]) == 0
    row = json.loads(capsys.readouterr().out)["uint8_io"][0]
    assert row["size"] == [64, 48] and row["runs"] == 3
    assert set(row["median_ms"]) == {"to_float", "float_graph", "to_uint8", "uint8_graph"}
    assert row["output_max_abs_diff_levels"] <= 1
