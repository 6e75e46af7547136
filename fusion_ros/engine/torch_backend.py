"""PyTorch backend, for development: CPU FP32, or CUDA in channels_last at the configured precision (FP32 or FP16)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from fusion_ros.engine.base import Backend, EngineConfig
from fusion_ros.errors import ConfigError
from fusion_ros.model.artifact import load_student, open_artifact

__all__ = ["TorchBackend"]

log = logging.getLogger(__name__)


class TorchBackend(Backend):
    """Runs the student's PyTorch weights (``X.pt`` beside ``X.onnx``, or a ``.pt`` itself); memory stays on the device."""

    name = "torch"

    def __init__(self, onnx_path: Path, cfg: EngineConfig) -> None:
        import torch

        from fusion_ros.model.student import fold_for_inference

        if cfg.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device 'cuda' requested but torch sees no CUDA GPU; use device: auto or cpu")
        self.torch = torch
        self.device = torch.device("cuda" if cfg.device != "cpu" and torch.cuda.is_available() else "cpu")
        precision = cfg.precision
        if precision == "fp16" and self.device.type == "cpu":
            log.info("fp16 requested on the CPU; running fp32 (half precision is slower on CPUs)")
            precision = "fp32"
        # An exported model's files are checked against each other; a bare .pt (a training checkpoint) stands alone.
        artifact = open_artifact(onnx_path) if Path(onnx_path).suffix == ".onnx" else None
        model = load_student(onnx_path)
        if artifact is not None:
            artifact.check_weights(model.cfg)
        super().__init__(precision, model.stride, model.cfg.state_channels)
        model = fold_for_inference(model)     # the graph the ONNX export traces: same outputs, less element-wise work
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        model = model.to(self.device, self.dtype)
        if self.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        if self.device.type == "cpu" and cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.model = model.eval()
        self.model_path = str(onnx_path)

    def _zeros(self, shape: tuple[int, ...]) -> Any:
        return self.torch.zeros(shape, dtype=self.dtype, device=self.device)

    def _to_device(self, x: np.ndarray) -> Any:
        t = self.torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(self.device, self.dtype, non_blocking=True)
        return t.contiguous(memory_format=self.torch.channels_last) if self.device.type == "cuda" else t

    def _run(self, thermal: np.ndarray, visible: np.ndarray, memory: Any) -> tuple[np.ndarray, Any]:
        with self.torch.inference_mode():
            fused, new_memory = self.model(self._to_device(thermal), self._to_device(visible), memory)
        return fused.float().cpu().numpy(), new_memory

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "device": str(self.device), "model": self.model.cfg.name, "model_path": self.model_path}
