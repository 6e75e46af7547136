"""Every backend checks the model at load (sidecar sha256, memory shape); the ONNX Runtime path imports no torch."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fusion_ros.engine import EngineConfig, create_backend
from fusion_ros.engine.factory import NVIDIA_DEVICE_NODES
from fusion_ros.errors import ConfigError

pytest.importorskip("onnxruntime")

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"


def _copy_model(name: str, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for ext in (".onnx", ".json", ".pt"):
        shutil.copy(MODELS / f"fusion_{name}{ext}", dst / f"m{ext}")
    return dst / "m.onnx"


def _reseal(onnx: Path, **changes) -> None:
    """Rewrite the sidecar so that its sha256 matches the .onnx as it is now, with ``changes`` applied."""
    side = json.loads(onnx.with_suffix(".json").read_text())
    side.update(changes, onnx_sha256=hashlib.sha256(onnx.read_bytes()).hexdigest())
    onnx.with_suffix(".json").write_text(json.dumps(side))


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_another_models_sidecar_fails_at_load(tmp_path, backend, other_model) -> None:
    onnx = _copy_model("lite", tmp_path)
    shutil.copy(other_model.with_suffix(".json"), onnx.with_suffix(".json"))
    with pytest.raises(ConfigError, match=f"model_path '{onnx}'.*another ONNX file"):
        create_backend(EngineConfig(model_path=str(onnx), backend=backend))


def test_memory_shape_that_contradicts_the_graph_fails_at_load(tmp_path) -> None:
    onnx = _copy_model("lite", tmp_path)
    _reseal(onnx, memory_channels=97)
    with pytest.raises(ConfigError, match=r"model_path.*'memory' input is \(1, 81, 'h', 'w'\).*\(1, 97, h, w\)"):
        create_backend(EngineConfig(model_path=str(onnx), backend="onnxruntime"))


def test_garbage_onnx_fails_at_load_even_with_a_matching_sidecar(tmp_path) -> None:
    onnx = _copy_model("lite", tmp_path)
    onnx.write_bytes(b"\x08garbage" * 10)
    _reseal(onnx)
    with pytest.raises(ConfigError, match="model_path.*is not a loadable ONNX model.*re-export"):
        create_backend(EngineConfig(model_path=str(onnx), backend="onnxruntime"))


def test_torch_backend_refuses_weights_of_another_model(tmp_path, other_model) -> None:
    onnx = _copy_model("lite", tmp_path)
    shutil.copy(other_model.with_suffix(".pt"), onnx.with_suffix(".pt"))
    with pytest.raises(ConfigError, match="weights belong to another model"):
        create_backend(EngineConfig(model_path=str(onnx), backend="torch"))


def test_bare_weights_run_on_torch_only(tmp_path) -> None:
    pt = MODELS / "fusion_lite.pt"
    assert create_backend(EngineConfig(model_path=str(pt))).name == "torch"
    with pytest.raises(ConfigError, match="is PyTorch weights; backend 'onnxruntime' runs an exported .onnx"):
        create_backend(EngineConfig(model_path=str(pt), backend="onnxruntime"))


def test_cli_gives_one_line_for_a_garbage_model(tmp_path) -> None:
    onnx = _copy_model("lite", tmp_path / "model")
    onnx.write_bytes(b"not a model")
    pairs = tmp_path / "pairs"
    for sub in ("ir", "vi"):
        (pairs / sub).mkdir(parents=True)
    run = subprocess.run([sys.executable, "-m", "fusion_ros.cli", "fuse", "--pairs", str(pairs), "--out", str(tmp_path / "out"),
                          "--model", str(onnx), "--quiet"], capture_output=True, text=True)
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fusion-ros fuse: error: model_path"), run.stderr
    assert "Traceback" not in run.stderr


def test_onnxruntime_backend_runs_without_torch() -> None:
    """Import, load and infer on ONNX Runtime in a fresh interpreter; ``auto`` too where no NVIDIA driver exists."""
    code = """
import sys
import numpy as np
import fusion_ros.engine.onnxruntime_backend
from fusion_ros.engine import EngineConfig, create_backend
print("import", "torch" in sys.modules)
be = create_backend(EngineConfig(backend="onnxruntime"))
be.infer(np.zeros((1, 1, 32, 48), np.float32), np.zeros((1, 3, 32, 48), np.float32))
print("infer", "torch" in sys.modules)
be = create_backend(EngineConfig(backend="auto"))
print("auto", be.name, "torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[:2] == ["import False", "infer False"], out
    if any(Path(p).exists() for p in NVIDIA_DEVICE_NODES):
        print(f"an NVIDIA driver is present, so 'auto' may import torch to ask CUDA: {out[2]}")
    else:
        assert out[2] == "auto onnxruntime False", out


def test_a_variant_that_is_not_shipped_names_the_recipe_that_writes_it() -> None:
    from fusion_ros.engine import default_model_path, shipped_variants

    if (MODELS / "fusion_default.onnx").exists():
        pytest.skip("models/fusion_default.onnx exists here (trained locally): the variant is present")
    assert shipped_variants() == ["lite"]
    with pytest.raises(ConfigError, match=r"'default' is not shipped.*fusion-ros train --config "
                                          r"config/train/default.yaml.*models/fusion_default.onnx.*model_path"):
        create_backend(EngineConfig(model_path="default", backend="onnxruntime"))
    assert default_model_path("lite").name == "fusion_lite.onnx"
