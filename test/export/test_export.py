"""ONNX export: checker, named I/O, dynamic H/W, parity with PyTorch over frames with memory, FP16."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from fusion_ros.export import compare_onnx_to_torch, convert_onnx_fp16, export_onnx
from fusion_ros.model import create_model
from fusion_ros.model.artifact import load_student, open_artifact, read_sidecar, sha256_file

pytestmark = pytest.mark.onnx
ort = pytest.importorskip("onnxruntime")


def _random_model(name: str) -> torch.nn.Module:
    model = create_model(name)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model.eval()


@pytest.fixture(scope="module", params=["lite", "default"])
def exported(request, tmp_path_factory):
    model = _random_model(request.param)
    path = export_onnx(model, tmp_path_factory.mktemp(request.param) / f"{request.param}.onnx", meta={"test": True})
    return model, path


def test_graph_is_valid_with_named_dynamic_io(exported) -> None:
    _, path = exported
    graph = onnx.load(str(path)).graph
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    assert [i.name for i in graph.input] == ["thermal", "visible", "memory"]
    assert [o.name for o in graph.output] == ["fused", "memory_out"]
    dims = [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims[2:] == ["H", "W"]


def test_sidecar_describes_the_model(exported) -> None:
    model, path = exported
    side = read_sidecar(path)
    assert side["onnx_sha256"] == sha256_file(path)
    assert side["stride"] == model.stride
    assert side["memory_channels"] == model.cfg.state_channels
    assert side["config"]["name"] == model.cfg.name
    assert "ceil(H / stride)" in side["memory_shape_rule"]
    json.dumps(side)


def test_parity_three_frames_two_sizes(exported) -> None:
    """ORT CPU vs PyTorch FP32 <= 1e-4 on fused and memory_out; 61x83 is not a multiple of the stride."""
    model, path = exported
    worst = compare_onnx_to_torch(path, model, sizes=((64, 96), (61, 83)), frames=3)
    assert worst["fused"] <= 1e-4, worst
    assert worst["memory_out"] <= 1e-4, worst


def test_weights_round_trip(exported) -> None:
    model, path = exported
    loaded = load_student(path)
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k


def test_checkpoint_predating_the_output_history(tmp_path) -> None:
    """An older .pt (no ``history`` in its config or weights) loads for fine-tuning only, with its variant's settings."""
    from dataclasses import asdict

    old = _random_model("lite")
    cfg = {k: v for k, v in asdict(old.cfg).items() if k not in ("history", "history_warp")}
    weights = {k: v for k, v in old.state_dict().items() if not k.startswith("history.")}
    path = tmp_path / "old.pt"
    torch.save({"config": cfg, "state_dict": weights, "meta": {}}, path)
    with pytest.raises(RuntimeError, match="history"):
        load_student(path)
    model = load_student(path, allow_new_modules=True)
    assert model.cfg.history_warp is False, "missing fields come from the 'lite' variant, not the dataclass default"
    hw = (32, 48)
    t, v = torch.rand(1, 1, *hw), torch.rand(1, 3, *hw)
    with torch.no_grad():
        assert torch.equal(model(t, v, model.zero_memory(*hw))[0], old(t, v, old.zero_memory(*hw))[0])
    broken = dict(weights, **{"history.params.weight": torch.zeros(2, 32, 1, 1)})   # part of a module only
    torch.save({"config": cfg, "state_dict": broken, "meta": {}}, path)
    with pytest.raises(Exception, match="does not match|size mismatch"):
        load_student(path, allow_new_modules=True)


def test_fp16_agrees_with_fp32(exported, tmp_path) -> None:
    model, path = exported
    half = convert_onnx_fp16(path, tmp_path / "half.onnx")
    assert open_artifact(half).sidecar["meta"]["derived_from_sha256"] == open_artifact(path).onnx_sha256
    sess = ort.InferenceSession(str(half), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    h, w = 61, 83
    mem_t = model.zero_memory(h, w)
    mem_h = mem_t.numpy()
    worst = 0.0
    for _ in range(3):
        t = rng.random((1, 1, h, w), dtype=np.float32)
        v = rng.random((1, 3, h, w), dtype=np.float32)
        with torch.no_grad():
            f_t, mem_t = model(torch.from_numpy(t), torch.from_numpy(v), mem_t)
        f_h, mem_h = sess.run(None, {"thermal": t, "visible": v, "memory": mem_h})
        worst = max(worst, float(np.abs(f_h - f_t.numpy()).max()))
    assert worst <= 1e-2, worst


def test_export_cli_keeps_the_training_record(tmp_path, capsys) -> None:
    """Re-exporting trained weights (``fusion-ros export --checkpoint X.pt``) keeps how they were trained."""
    from fusion_ros.cli import main

    first = export_onnx(_random_model("lite"), tmp_path / "a" / "lite.onnx", meta={"steps_run": {"stage1": {"steps": 7}}})
    rc = main(["export", "--checkpoint", str(first.with_suffix(".pt")), "--out", str(tmp_path / "b" / "lite.onnx")])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["parity_max_abs_diff"]["fused"] <= 1e-4
    meta = read_sidecar(tmp_path / "b" / "lite.onnx")["meta"]
    assert meta["steps_run"] == {"stage1": {"steps": 7}}
    assert meta["source"].endswith("lite.pt")
