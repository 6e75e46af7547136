"""Backends behind one interface: same results, memory carried and reset, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fusion_ros.engine import EngineConfig, available_backends, create_backend
from fusion_ros.engine.factory import _auto_choice
from fusion_ros.errors import ConfigError, ShapeError
from fusion_ros.export import export_onnx
from fusion_ros.model import create_model

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def random_model_path(tmp_path_factory):
    model = create_model("lite")
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return export_onnx(model.eval(), tmp_path_factory.mktemp("m") / "rand_lite.onnx")


def _frames(n: int, hw=(50, 70), seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.random((1, 1, *hw), dtype=np.float32), rng.random((1, 3, *hw), dtype=np.float32)) for _ in range(n)]


def test_onnxruntime_and_torch_agree_with_memory(random_model_path) -> None:
    ort_be = create_backend(EngineConfig(model_path=str(random_model_path), backend="onnxruntime"))
    tor_be = create_backend(EngineConfig(model_path=str(random_model_path), backend="torch"))
    for t, v in _frames(3):
        a, b = ort_be.infer(t, v), tor_be.infer(t, v)
        assert a.shape == (1, 3, 50, 70) and a.dtype == np.float32
        assert np.abs(a - b).max() <= 1e-4


def test_memory_is_carried_and_reset(random_model_path) -> None:
    be = create_backend(EngineConfig(model_path=str(random_model_path), backend="onnxruntime"))
    (t0, v0), (t1, v1) = _frames(2)
    first = be.infer(t0, v0)
    carried = be.infer(t1, v1)
    be.reset_memory()
    fresh = be.infer(t1, v1)
    assert np.abs(carried - fresh).max() > 1e-4, "the memory must influence the second frame"
    assert np.allclose(be.infer(t1, v1, use_memory=False), fresh, atol=1e-6)
    # A size change starts from zeros instead of failing on a memory of the wrong shape.
    t2, v2 = _frames(1, hw=(40, 40))[0]
    assert be.infer(t2, v2).shape == (1, 3, 40, 40)
    assert first.shape == (1, 3, 50, 70)


def test_shipped_model_loads_by_default() -> None:
    be = create_backend(EngineConfig())
    assert be.describe()["model"] == "lite"
    with pytest.raises(ShapeError, match="visible must be"):
        be.infer(np.zeros((1, 1, 8, 8), np.float32), np.zeros((1, 3, 9, 8), np.float32))


@pytest.mark.parametrize("busy_wait", [True, False])
def test_onnxruntime_threads_spin_only_when_asked(random_model_path, busy_wait: bool) -> None:
    """busy_wait reaches ONNX Runtime's session, and the results do not depend on it."""
    be = create_backend(EngineConfig(model_path=str(random_model_path), backend="onnxruntime", threads=2, busy_wait=busy_wait))
    entry = be.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")
    assert entry == ("1" if busy_wait else "0")
    ref = create_backend(EngineConfig(model_path=str(random_model_path), backend="onnxruntime", threads=1))
    (t, v), = _frames(1)
    assert np.allclose(be.infer(t, v), ref.infer(t, v), atol=1e-6)


def test_bad_config_names_the_parameter() -> None:
    with pytest.raises(ConfigError, match="model_path '/nope.onnx' does not exist"):
        create_backend(EngineConfig(model_path="/nope.onnx"))
    with pytest.raises(ConfigError, match="backend 'tensor' unknown"):
        EngineConfig(backend="tensor")
    with pytest.raises(ConfigError, match="min_hw <= opt_hw <= max_hw"):
        EngineConfig(opt_hw=(2000, 640))


def test_auto_prefers_gpu_backends() -> None:
    assert _auto_choice({"tensorrt": "cuda", "onnxruntime": "cuda", "torch": "cuda"}) == "tensorrt"
    assert _auto_choice({"onnxruntime": "cuda", "torch": "cuda"}) == "onnxruntime"
    assert _auto_choice({"onnxruntime": "cpu", "torch": "cuda"}) == "torch"
    assert _auto_choice({"onnxruntime": "cpu", "torch": "cpu"}) == "onnxruntime"
    assert "onnxruntime" in available_backends()


@pytest.mark.gpu
def test_torch_cuda_fp16_matches_fp32(random_model_path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine")
    half = create_backend(EngineConfig(model_path=str(random_model_path), backend="torch", precision="fp16", device="cuda"))
    full = create_backend(EngineConfig(model_path=str(random_model_path), backend="torch", device="cpu"))
    for t, v in _frames(3):
        assert np.abs(half.infer(t, v) - full.infer(t, v)).max() <= 1e-2
