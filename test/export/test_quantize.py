"""INT8 export: a model artifact of its own that the engine loads, close to the FP32 model, never over its input."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from fusion_ros.cli import main
from fusion_ros.engine import EngineConfig, create_backend
from fusion_ros.model.artifact import open_artifact
from fusion_ros.pipeline.fuser import Fuser, FuserConfig
from fusion_ros.tools.scene import NightScene, SceneConfig

pytestmark = pytest.mark.onnx

REPO = Path(__file__).resolve().parents[2]


def _scene_pairs(root: Path, n: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pairs of the procedural night scene, written as an aligned pair folder (16-bit thermal, RGB)."""
    (root / "ir").mkdir(parents=True)
    (root / "vi").mkdir(parents=True)
    scene = NightScene(SceneConfig(seed=3))
    pairs = []
    for i in range(n):
        thermal, rgb = scene.thermal(i * 0.5), scene.rgb(i * 0.5)
        cv2.imwrite(str(root / "ir" / f"{i:03d}.png"), thermal)
        cv2.imwrite(str(root / "vi" / f"{i:03d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        pairs.append((thermal, rgb))
    return pairs


def _fuse(model: Path, pairs) -> list[np.ndarray]:
    fuser = Fuser(create_backend(EngineConfig(backend="onnxruntime", model_path=str(model), threads=1)),
                  FuserConfig())
    return [fuser.step(th, cv2.resize(rgb, (320, 240)), stamp=i * 0.1).astype(np.float32) for i, (th, rgb) in
            enumerate(pairs)]


def test_int8_model_loads_fuses_close_to_fp32_and_never_replaces_its_input(tmp_path, capsys) -> None:
    src = tmp_path / "models" / "fusion_lite.onnx"
    src.parent.mkdir()
    for ext in (".onnx", ".json", ".pt"):
        shutil.copy(REPO / "models" / f"fusion_lite{ext}", src.with_suffix(ext))
    before = hashlib.sha256(src.read_bytes()).hexdigest()
    pairs = _scene_pairs(tmp_path / "calib")
    out = tmp_path / "int8" / "lite_int8.onnx"

    assert main(["export", "--int8-from", str(src), "--out", str(src)]) == 1          # no --calib
    assert main(["export", "--int8-from", str(src), "--calib", str(tmp_path / "calib"), "--out", str(src),
                 "--force"]) == 1                                                         # over its own input
    assert hashlib.sha256(src.read_bytes()).hexdigest() == before
    capsys.readouterr()

    assert main(["export", "--int8-from", str(src), "--calib", str(tmp_path / "calib"), "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["calibration_pairs"] == 3
    artifact = open_artifact(out)                                  # the sidecar was written for this very file
    assert artifact.sidecar["meta"]["derived_from_sha256"] == open_artifact(src).onnx_sha256
    assert any(n.op_type == "QuantizeLinear" for n in __import__("onnx").load(str(out)).graph.node)

    fp32, int8 = _fuse(src, pairs), _fuse(out, pairs)
    diffs = [float(np.abs(a - b).mean()) for a, b in zip(fp32, int8)]
    assert max(diffs) < 6.0, diffs                                 # mean |diff| in 8-bit levels
    assert main(["export", "--int8-from", str(src), "--calib", str(tmp_path / "calib"), "--out", str(out)]) == 1
