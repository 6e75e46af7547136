"""TensorRT engine cache logic (no TensorRT needed) and the TensorRT path itself (skips without it)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fusion_ros.engine import EngineCache, EngineConfig, EngineKey, shape_profile
from fusion_ros.errors import ConfigError

KEY = EngineKey(onnx_sha256="a" * 64, tensorrt_version="10.3.0", gpu_name="NVIDIA H100", compute_capability="9.0",
                precision="fp16", min_hw=(64, 64), opt_hw=(480, 640), max_hw=(1088, 1920))


def test_key_changes_with_every_field() -> None:
    changes = {"onnx_sha256": "b" * 64, "tensorrt_version": "10.4.0", "gpu_name": "Orin", "compute_capability": "8.7",
               "precision": "fp32", "min_hw": (32, 32), "opt_hw": (720, 1280), "max_hw": (2160, 3840)}
    digests = {dataclasses.replace(KEY, **{k: v}).digest() for k, v in changes.items()}
    assert KEY.digest() not in digests and len(digests) == len(changes)
    assert KEY.digest() == dataclasses.replace(KEY).digest(), "the key must be deterministic"


def test_valid_engine_is_reused_and_stale_or_foreign_is_rejected(tmp_path) -> None:
    cache = EngineCache(tmp_path)
    path = cache.engine_path("fusion_lite", KEY)
    assert cache.is_valid(path, KEY) == (False, "no engine built yet")
    cache.write(path, b"engine-bytes", KEY)
    assert cache.is_valid(path, KEY) == (True, "up to date")

    other_gpu = dataclasses.replace(KEY, gpu_name="NVIDIA A100", compute_capability="8.0")
    ok, why = cache.is_valid(path, other_gpu)
    assert not ok and "gpu_name" in why and "compute_capability" in why

    newer_trt = dataclasses.replace(KEY, tensorrt_version="10.5.0")
    assert not cache.is_valid(path, newer_trt)[0]

    foreign = tmp_path / "copied.engine"
    foreign.write_bytes(b"from another machine")
    ok, why = cache.is_valid(foreign, KEY)
    assert not ok and "no build record" in why

    cache.record_path(path).write_text("{not json")
    assert not cache.is_valid(path, KEY)[0]


def test_cache_files_are_per_key_and_timing_cache_per_gpu(tmp_path) -> None:
    cache = EngineCache(tmp_path)
    fp32 = dataclasses.replace(KEY, precision="fp32")
    assert cache.engine_path("m", KEY) != cache.engine_path("m", fp32)
    assert cache.timing_cache_path(KEY) == cache.timing_cache_path(fp32)
    assert "sm90" in cache.timing_cache_path(KEY).name
    assert EngineCache("~/x").root.is_absolute()


def test_shape_profile_follows_the_memory_rule() -> None:
    prof = shape_profile((64, 64), (480, 640), (1080, 1920), stride=8, memory_channels=16)
    assert prof["thermal"] == ((1, 1, 64, 64), (1, 1, 480, 640), (1, 1, 1080, 1920))
    assert prof["visible"][1] == (1, 3, 480, 640)
    assert prof["memory"] == ((1, 16, 8, 8), (1, 16, 60, 80), (1, 16, 135, 240))
    assert shape_profile((61, 83), (61, 83), (61, 83), 8, 4)["memory"][0] == (1, 4, 8, 11)
    with pytest.raises(ConfigError, match="min <= opt <= max"):
        shape_profile((480, 640), (64, 64), (1080, 1920), 8, 16)


@pytest.mark.trt
@pytest.mark.gpu
def test_tensorrt_backend_builds_caches_and_runs(tmp_path) -> None:
    from fusion_ros.engine.tensorrt_backend import tensorrt_available

    ok, why = tensorrt_available()
    if not ok:
        pytest.skip(f"TensorRT path not runnable here: {why}")
    from fusion_ros.engine import create_backend

    cfg = EngineConfig(backend="tensorrt", precision="fp16", cache_dir=str(tmp_path), opt_hw=(128, 160), max_hw=(256, 320))
    be = create_backend(cfg)
    ref = create_backend(EngineConfig(backend="onnxruntime"))
    rng = np.random.default_rng(0)
    for _ in range(3):
        t = rng.random((1, 1, 120, 150), dtype=np.float32)
        v = rng.random((1, 3, 120, 150), dtype=np.float32)
        assert np.abs(be.infer(t, v) - ref.infer(t, v)).max() <= 1e-2
    assert len(list(tmp_path.glob("*.engine"))) == 1
    create_backend(cfg)  # second start reuses the engine
    assert len(list(tmp_path.glob("*.engine"))) == 1
