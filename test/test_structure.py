"""The shape of the package, checked in fresh interpreters (so transitive imports count) and by ruff.

- The node module, also after building the ONNX Runtime backend, loads neither torch nor the training code.
- The ROS-free rooms (training, pipeline, engine, model, io) load no rclpy.
- ``python -m ruff check`` finds nothing (ruff.toml: pyflakes and pycodestyle errors).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _loaded_after(code: str) -> list[str]:
    """Names in ``sys.modules`` after running ``code`` in a fresh interpreter from the repository root."""
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _under(modules: list[str], package: str) -> list[str]:
    return [m for m in modules if m == package or m.startswith(package + ".")]


def test_node_module_loads_no_torch_and_no_training() -> None:
    pytest.importorskip("rclpy", reason="the node module needs rclpy (ROS 2 Jazzy)")
    loaded = _loaded_after("import fusion_ros.ros.node")
    assert not _under(loaded, "torch")
    assert not _under(loaded, "fusion_ros.train")


def test_onnxruntime_node_loads_no_torch_and_no_training() -> None:
    pytest.importorskip("rclpy", reason="the node module needs rclpy (ROS 2 Jazzy)")
    pytest.importorskip("onnxruntime", reason="the ONNX Runtime backend needs onnxruntime")
    loaded = _loaded_after("import fusion_ros.ros.node\n"
                           "from fusion_ros.engine import EngineConfig, create_backend\n"
                           "be = create_backend(EngineConfig(backend='onnxruntime', threads=1))\n"
                           "assert be.name == 'onnxruntime', be.name")
    assert "onnxruntime" in loaded          # the probe did build the backend
    assert not _under(loaded, "torch")
    assert not _under(loaded, "fusion_ros.train")


@pytest.mark.parametrize("package", ["fusion_ros.train", "fusion_ros.pipeline", "fusion_ros.engine",
                                     "fusion_ros.model", "fusion_ros.io"])
def test_ros_free_package_loads_no_rclpy(package: str) -> None:
    root = ROOT / package.replace(".", "/")
    modules = sorted(f"{package}.{p.stem}" for p in root.glob("*.py") if p.stem != "__init__")
    loaded = _loaded_after("\n".join(f"import {m}" for m in [package, *modules]))
    assert set(modules) <= set(loaded)      # every module of the package was imported
    assert not _under(loaded, "rclpy")


def test_ruff_finds_nothing() -> None:
    import importlib.util

    if importlib.util.find_spec("ruff") is None:
        print("ruff is not installed (pip install ruff): the lint check did not run")
        pytest.skip("ruff is not installed (pip install ruff)")
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "fusion_ros", "test", "tools", "launch"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
