"""TensorRT 10 backend: build (FP16, optimization profile, timing cache), cache, load, run.

Written against the TensorRT 10 Python API (``tensorrt`` >= 10). Device buffers are torch CUDA
tensors, so no pycuda is needed; the memory state stays on the GPU between frames (two buffers,
swapped after each call).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from fusion_ros.engine.base import Backend, EngineConfig
from fusion_ros.engine.cache import EngineCache, EngineKey, shape_profile
from fusion_ros.errors import EngineBuildError
from fusion_ros.model.artifact import Artifact, open_artifact

__all__ = ["TensorRTBackend", "build_engine", "engine_key_for", "tensorrt_available"]

log = logging.getLogger(__name__)

WORKSPACE_BYTES = 1 << 30


def tensorrt_available() -> tuple[bool, str]:
    """(True, "") when TensorRT and a CUDA GPU can be used; otherwise (False, why)."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False, "the tensorrt Python package is not installed"
    import torch

    if not torch.cuda.is_available():
        return False, "no CUDA GPU visible to torch"
    return True, ""


def engine_key_for(artifact: Artifact, cfg: EngineConfig) -> EngineKey:
    import tensorrt as trt
    import torch

    major, minor = torch.cuda.get_device_capability()
    return EngineKey(onnx_sha256=artifact.onnx_sha256, tensorrt_version=trt.__version__,
                     gpu_name=torch.cuda.get_device_name(), compute_capability=f"{major}.{minor}",
                     precision=cfg.precision, min_hw=tuple(cfg.min_hw), opt_hw=tuple(cfg.opt_hw), max_hw=tuple(cfg.max_hw))


def _engine_input_shapes(engine) -> dict[str, tuple[int, ...]]:
    import tensorrt as trt

    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    return {n: tuple(engine.get_tensor_shape(n)) for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT}


def build_engine(artifact: Artifact, cfg: EngineConfig, cache: EngineCache, key: EngineKey) -> bytes:
    """Parse ONNX, set precision and the shape profile, build and serialize, reusing the timing cache."""
    import tensorrt as trt

    onnx_path = artifact.onnx_path
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT could not parse {onnx_path}: {errors}")
    artifact.check_graph_inputs({network.get_input(i).name: tuple(network.get_input(i).shape) for i in range(network.num_inputs)})
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if cfg.precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in shape_profile(cfg.min_hw, cfg.opt_hw, cfg.max_hw, artifact.stride, artifact.memory_channels).items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    timing_path = cache.timing_cache_path(key)
    timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
    config.set_timing_cache(timing, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    cache.root.mkdir(parents=True, exist_ok=True)
    tmp = timing_path.with_suffix(".cache.tmp")
    tmp.write_bytes(memoryview(config.get_timing_cache().serialize()))
    os.replace(tmp, timing_path)
    return bytes(serialized)


class TensorRTBackend(Backend):
    """Loads (building first if needed) a cached engine and runs it with device-resident memory."""

    name = "tensorrt"

    def __init__(self, onnx_path: Path, cfg: EngineConfig) -> None:
        ok, why = tensorrt_available()
        if not ok:
            raise EngineBuildError(f"backend 'tensorrt' unavailable: {why}; use backend: onnxruntime or auto")
        import tensorrt as trt
        import torch

        artifact = open_artifact(onnx_path)
        super().__init__(cfg.precision, artifact.stride, artifact.memory_channels)
        self.torch = torch
        cache = EngineCache(cfg.cache_dir)
        key = engine_key_for(artifact, cfg)
        self.engine_path = cache.engine_path(Path(onnx_path).stem, key)
        valid, reason = cache.is_valid(self.engine_path, key)
        if not valid:
            log.warning("building TensorRT %s engine for %s (%s); this may take several minutes", cfg.precision, onnx_path, reason)
            cache.write(self.engine_path, build_engine(artifact, cfg, cache, key), key)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self.engine is None:
            raise EngineBuildError(f"TensorRT could not load {self.engine_path}; delete it to rebuild")
        artifact.check_graph_inputs(_engine_input_shapes(self.engine))
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        self.cfg = cfg
        log.info("tensorrt backend: %s (%s)", self.engine_path, cfg.precision)

    def _zeros(self, shape: tuple[int, ...]) -> Any:
        return self.torch.zeros(shape, dtype=self.torch.float32, device="cuda")

    def _run(self, thermal: np.ndarray, visible: np.ndarray, memory: Any) -> tuple[np.ndarray, Any]:
        torch = self.torch
        with torch.cuda.stream(self.stream):
            t = torch.from_numpy(np.ascontiguousarray(thermal, np.float32)).cuda(non_blocking=True)
            v = torch.from_numpy(np.ascontiguousarray(visible, np.float32)).cuda(non_blocking=True)
            fused = torch.empty((1, 3, *thermal.shape[2:]), dtype=torch.float32, device="cuda")
            new_memory = torch.empty_like(memory)
            for name, tensor in (("thermal", t), ("visible", v), ("memory", memory)):
                self.context.set_input_shape(name, tuple(tensor.shape))
                self.context.set_tensor_address(name, tensor.data_ptr())
            self.context.set_tensor_address("fused", fused.data_ptr())
            self.context.set_tensor_address("memory_out", new_memory.data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise EngineBuildError("TensorRT execution failed")
            out = fused.cpu()
        return out.numpy(), new_memory

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "engine": str(self.engine_path)}
