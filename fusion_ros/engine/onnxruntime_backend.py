"""ONNX Runtime backend: TensorRT EP -> CUDA EP -> CPU EP, whichever this onnxruntime build has."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from fusion_ros.engine.base import Backend, EngineConfig
from fusion_ros.errors import ConfigError
from fusion_ros.model.artifact import open_artifact, reexport_hint

__all__ = ["OnnxRuntimeBackend", "select_providers"]

log = logging.getLogger(__name__)

PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def select_providers(available: list[str], device: str, precision: str, cache_dir: str) -> list[Any]:
    """Providers in preference order, filtered by what exists and by ``device``."""
    chosen: list[Any] = []
    for name in PROVIDER_ORDER:
        if name not in available:
            continue
        if device == "cpu" and name != "CPUExecutionProvider":
            continue
        if name == "TensorrtExecutionProvider":
            chosen.append((name, {"trt_fp16_enable": precision == "fp16", "trt_engine_cache_enable": True,
                                  "trt_engine_cache_path": os.path.expanduser(cache_dir), "trt_timing_cache_enable": True}))
        else:
            chosen.append(name)
    return chosen


class OnnxRuntimeBackend(Backend):
    """Runs the exported ONNX graph with ONNX Runtime; memory stays a numpy array between calls."""

    name = "onnxruntime"

    def __init__(self, onnx_path: Path, cfg: EngineConfig) -> None:
        import onnxruntime as ort

        artifact = open_artifact(onnx_path)
        providers = select_providers(ort.get_available_providers(), cfg.device, cfg.precision, cfg.cache_dir)
        on_gpu = any((p[0] if isinstance(p, tuple) else p) != "CPUExecutionProvider" for p in providers)
        precision = cfg.precision
        if precision == "fp16" and not on_gpu:
            log.info("fp16 requested but only the CPU provider exists; running fp32 (fp16 is slower on CPUs)")
            precision = "fp32"
        super().__init__(precision, artifact.stride, artifact.memory_channels)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if cfg.threads:
            opts.intra_op_num_threads = cfg.threads
        opts.inter_op_num_threads = 1
        # Spinning threads answer the next operation sooner, and hold their cores from a camera driver meanwhile.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if cfg.busy_wait else "0")
        try:
            self.session = ort.InferenceSession(str(onnx_path), opts, providers=providers)
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own pybind types for unreadable or invalid graphs
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"model_path '{onnx_path}' is not a loadable ONNX model ({first}); {reexport_hint(onnx_path)}") from None
        artifact.check_graph_inputs({i.name: i.shape for i in self.session.get_inputs()})
        self.providers = self.session.get_providers()
        self.model_path = str(onnx_path)
        self.model_name = artifact.model_name
        log.info("onnxruntime backend: %s on %s", onnx_path, self.providers)

    def _zeros(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.zeros(shape, np.float32)

    def _run(self, thermal: np.ndarray, visible: np.ndarray, memory: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fused, new_memory = self.session.run(None, {"thermal": np.ascontiguousarray(thermal, np.float32),
                                                    "visible": np.ascontiguousarray(visible, np.float32),
                                                    "memory": memory})
        return fused, new_memory

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "providers": self.providers, "model": self.model_name, "model_path": self.model_path}
