"""Backend selection: ``auto`` takes the fastest backend this machine can run."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from fusion_ros.engine.base import Backend, EngineConfig, resolve_model_path
from fusion_ros.errors import ConfigError

__all__ = ["create_backend", "available_backends"]

log = logging.getLogger(__name__)


# Device nodes of an NVIDIA driver (desktop, Jetson, WSL2). Without any, no CUDA can run, and torch need not be imported to learn it.
NVIDIA_DEVICE_NODES = ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/nvhost-ctrl-gpu", "/dev/dxg")


def _cuda_available() -> bool:
    if sys.platform.startswith("linux") and not any(Path(p).exists() for p in NVIDIA_DEVICE_NODES):
        return False
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def available_backends() -> dict[str, str]:
    """Backend name -> where it would run, for those that can run here."""
    from fusion_ros.engine.tensorrt_backend import tensorrt_available

    out: dict[str, str] = {}
    ok, _ = tensorrt_available()
    if ok:
        out["tensorrt"] = "cuda"
    try:
        import onnxruntime as ort

        provs = ort.get_available_providers()
        out["onnxruntime"] = "cuda" if ("CUDAExecutionProvider" in provs or "TensorrtExecutionProvider" in provs) else "cpu"
    except ImportError:
        pass
    out["torch"] = "cuda" if _cuda_available() else "cpu"
    return out


def _auto_choice(avail: dict[str, str]) -> str:
    # TensorRT, then ONNX Runtime on a GPU, then torch on CUDA, then ONNX Runtime on the CPU, then torch on the CPU.
    if "tensorrt" in avail:
        return "tensorrt"
    if avail.get("onnxruntime") == "cuda":
        return "onnxruntime"
    if avail.get("torch") == "cuda":
        return "torch"
    return "onnxruntime" if "onnxruntime" in avail else "torch"


def create_backend(cfg: EngineConfig | None = None) -> Backend:
    """Build the configured backend (for TensorRT this may build and cache an engine first)."""
    cfg = cfg or EngineConfig()
    path = resolve_model_path(cfg.model_path)
    name = cfg.backend
    if path.suffix == ".pt":
        # Bare weights (a training checkpoint) run only on the torch backend; the others run the exported graph.
        if name not in ("auto", "torch"):
            raise ConfigError(f"model_path '{cfg.model_path}' is PyTorch weights; backend '{name}' runs an exported .onnx: "
                              "pass the .onnx (see `fusion-ros export`) or backend torch")
        name = "torch"
    elif name == "auto":
        name = _auto_choice(available_backends())
    if name == "tensorrt":
        from fusion_ros.engine.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(path, cfg)
    if name == "onnxruntime":
        from fusion_ros.engine.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, cfg)
    from fusion_ros.engine.torch_backend import TorchBackend

    return TorchBackend(path, cfg)
