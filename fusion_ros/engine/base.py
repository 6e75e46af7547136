"""The one interface every inference backend implements, and the engine configuration.

A backend owns the streaming memory: it carries the state tensor from call to call (on the device
for GPU backends) and starts again from zeros on a size change or ``reset_memory()``.
"""

from __future__ import annotations

import abc
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fusion_ros.errors import ConfigError, ShapeError
from fusion_ros.model.variants import DEFAULT_VARIANT, VARIANTS

__all__ = ["BACKENDS", "PRECISIONS", "Backend", "EngineConfig", "default_model_path", "resolve_model_path"]

BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")
PRECISIONS = ("fp32", "fp16")


@dataclass(frozen=True)
class EngineConfig:
    """How the fusion network is run."""

    model_path: str = ""                               # .onnx (with .json/.pt beside it); "" = the shipped lite model
    backend: str = "auto"                              # auto | tensorrt | onnxruntime | torch
    precision: str = "fp32"                            # fp32 | fp16 (fp16 on GPU backends; CPU falls back to fp32 with a log line)
    cache_dir: str = "~/.cache/fusion_ros/engines"     # TensorRT engines and timing caches
    device: str = "auto"                               # auto | cpu | cuda (torch and onnxruntime)
    threads: int = 0                                   # CPU threads for inference, 0 = all cores
    busy_wait: bool = True                             # ONNX Runtime's threads spin between operations (threads > 1)
    min_hw: tuple[int, int] = (64, 64)                 # TensorRT optimization profile: smallest input (H, W), px
    opt_hw: tuple[int, int] = (480, 640)               # TensorRT optimization profile: the size it is tuned for
    max_hw: tuple[int, int] = (1088, 1920)             # TensorRT optimization profile: largest input (H, W), px

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend '{self.backend}' unknown; expected one of {', '.join(BACKENDS)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision '{self.precision}' unknown; expected one of {', '.join(PRECISIONS)}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device '{self.device}' unknown; expected auto, cpu or cuda")
        if self.threads < 0:
            raise ConfigError(f"threads={self.threads}; expected >= 0 (0 = all cores)")
        for name in ("min_hw", "opt_hw", "max_hw"):
            hw = getattr(self, name)
            if len(hw) != 2 or min(hw) < 8:
                raise ConfigError(f"{name}={hw}; expected (height, width) with both >= 8")
        if not all(a <= b <= c for a, b, c in zip(self.min_hw, self.opt_hw, self.max_hw)):
            raise ConfigError(f"shape range must satisfy min_hw <= opt_hw <= max_hw, got {self.min_hw}, {self.opt_hw}, {self.max_hw}")


def _model_dirs() -> list[Path]:
    dirs = [Path(__file__).resolve().parents[2] / "models"]
    try:  # installed with colcon: share/fusion_ros/models
        from ament_index_python.packages import get_package_share_directory

        dirs.append(Path(get_package_share_directory("fusion_ros")) / "models")
    except Exception:  # noqa: BLE001 - ament_index is optional; a missing package index just means a source checkout
        pass
    return dirs


def default_model_path(variant: str = DEFAULT_VARIANT) -> Path:
    """The shipped model ``fusion_<variant>.onnx`` (source checkout or installed share directory)."""
    if variant not in VARIANTS:
        raise ConfigError(f"model variant '{variant}' unknown; expected one of {VARIANTS}")
    for d in _model_dirs():
        p = d / f"fusion_{variant}.onnx"
        if p.is_file():
            return p
    if variant != DEFAULT_VARIANT:
        raise ConfigError(f"model variant '{variant}' is not shipped (the shipped model is '{DEFAULT_VARIANT}'); "
                          f"train it with `fusion-ros train --config config/train/{variant}.yaml` (it writes "
                          f"models/fusion_{variant}.onnx) or set model_path to an exported .onnx")
    raise ConfigError(f"shipped model fusion_{variant}.onnx not found in {[str(d) for d in _model_dirs()]}; "
                      "set model_path to an exported .onnx")


def shipped_variants() -> list[str]:
    """The variants whose model is present (``models/fusion_<variant>.onnx``, checkout or install)."""
    return [v for v in VARIANTS if any((d / f"fusion_{v}.onnx").is_file() for d in _model_dirs())]


def resolve_model_path(path: str) -> Path:
    """``""`` or a variant name (``lite``) -> the shipped model; otherwise an existing file (checked)."""
    if path in ("", *VARIANTS):
        return default_model_path(path or DEFAULT_VARIANT)
    p = Path(os.path.expanduser(path))
    if not p.is_file():
        raise ConfigError(f"model_path '{path}' does not exist; pass an exported .onnx (see `fusion-ros export`) or '' for the shipped model")
    return p


class Backend(abc.ABC):
    """Runs the student frame by frame and carries its memory.

    Subclasses implement :meth:`_run` on backend-native arrays and :meth:`_zeros`.
    """

    name: str = "base"

    def __init__(self, precision: str, stride: int, memory_channels: int) -> None:
        self.precision = precision
        self.stride = stride
        self.memory_channels = memory_channels
        self._memory: Any = None
        self._memory_hw: tuple[int, int] | None = None

    def memory_shape(self, height: int, width: int) -> tuple[int, int, int, int]:
        s = self.stride
        return (1, self.memory_channels, math.ceil(height / s), math.ceil(width / s))

    def reset_memory(self) -> None:
        """Forget the past: the next frame is fused as a first frame."""
        self._memory = None
        self._memory_hw = None

    def infer(self, thermal: np.ndarray, visible: np.ndarray, use_memory: bool = True) -> np.ndarray:
        """Fuse one frame.

        Args:
            thermal: (1, 1, H, W) float32 in [0, 1].
            visible: (1, 3, H, W) float32 RGB in [0, 1].
            use_memory: carry the streaming memory from the previous call (reset on a size change).

        Returns:
            (1, 3, H, W) float32 RGB in [0, 1].
        """
        if thermal.ndim != 4 or thermal.shape[:2] != (1, 1):
            raise ShapeError(f"thermal must be (1, 1, H, W) float32, got {thermal.shape} {thermal.dtype}")
        if visible.shape != (1, 3, *thermal.shape[2:]):
            raise ShapeError(f"visible must be (1, 3, H, W) matching thermal {thermal.shape}, got {visible.shape}")
        hw = (int(thermal.shape[2]), int(thermal.shape[3]))
        if not use_memory or self._memory_hw != hw:
            memory = self._zeros(self.memory_shape(*hw))
        else:
            memory = self._memory
        fused, new_memory = self._run(thermal, visible, memory)
        if use_memory:
            self._memory, self._memory_hw = new_memory, hw
        return fused

    @abc.abstractmethod
    def _run(self, thermal: np.ndarray, visible: np.ndarray, memory: Any) -> tuple[np.ndarray, Any]:
        """One forward pass; returns the fused image as float32 numpy and the new memory (backend-native)."""

    @abc.abstractmethod
    def _zeros(self, shape: tuple[int, ...]) -> Any:
        """A zero memory tensor of ``shape`` in the backend's native form."""

    def describe(self) -> dict[str, Any]:
        """What runs: for logs, /diagnostics and benchmark output."""
        return {"backend": self.name, "precision": self.precision}
