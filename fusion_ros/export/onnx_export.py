"""ONNX export of the student with its sidecar, and the checks that the exported graph matches PyTorch.

Files written for a model ``X``: ``X.onnx`` (weights embedded), ``X.json`` (the sidecar: model config,
input normalisation, stride, memory shape rule, ONNX sha256) and ``X.pt`` (plain state dict + config,
for the torch backend and for fine-tuning; no optimizer state).
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusion_ros.config import to_dict
from fusion_ros.errors import ConfigError
from fusion_ros.model import MODELS, FusionStudent, ModelConfig

__all__ = ["INPUT_NAMES", "OUTPUT_NAMES", "export_onnx", "load_student", "read_sidecar", "sha256_file",
           "compare_onnx_to_torch", "convert_onnx_fp16", "sidecar_path", "weights_path"]

log = logging.getLogger(__name__)

INPUT_NAMES = ("thermal", "visible", "memory")
OUTPUT_NAMES = ("fused", "memory_out")
OPSET = 17  # GridSample needs >= 16; 17 is supported by TensorRT 10 and every current ONNX Runtime
SIDECAR_VERSION = 1


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sidecar_path(onnx_path: str | Path) -> Path:
    return Path(onnx_path).with_suffix(".json")


def weights_path(onnx_path: str | Path) -> Path:
    return Path(onnx_path).with_suffix(".pt")


def read_sidecar(onnx_path: str | Path) -> dict:
    """Read the JSON sidecar next to an ONNX model; fails with the fix when it is missing."""
    p = sidecar_path(onnx_path)
    if not p.is_file():
        raise ConfigError(f"model sidecar '{p}' not found next to '{onnx_path}'; export the model with `fusion-ros export`")
    return json.loads(p.read_text())


def _config_from_dict(d: dict) -> ModelConfig:
    # Fields a saved config predates take the named variant's value, not the dataclass default.
    d = {**MODELS.get(d.get("name", ""), {}), **d}
    d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return ModelConfig(**d)


def load_student(path: str | Path, map_location: str = "cpu", allow_new_modules: bool = False) -> FusionStudent:
    """Load a student from ``X.pt`` (or from ``X.onnx``, using the ``X.pt`` beside it). Returns it in eval mode.

    Args:
        allow_new_modules: start modules that the checkpoint predates (whole submodules such as ``history``)
            from their initialisation instead of failing; any other mismatch still fails. For fine-tuning.
    """
    p = Path(path)
    if p.suffix == ".onnx":
        p = weights_path(p)
    if not p.is_file():
        raise ConfigError(f"model weights '{p}' not found; pass a .pt written by `fusion-ros export` or training")
    blob = torch.load(p, map_location=map_location, weights_only=True)
    model = FusionStudent(_config_from_dict(blob["config"]))
    if not allow_new_modules:
        model.load_state_dict(blob["state_dict"])
        return model.eval()
    missing, unexpected = model.load_state_dict(blob["state_dict"], strict=False)
    new_modules = {k.split(".")[0] for k in missing}
    partial = [k for k in blob["state_dict"] if k.split(".")[0] in new_modules]
    if unexpected or partial:
        raise ConfigError(f"{p} does not match the model: unexpected {unexpected[:5]}, partly present {partial[:5]}")
    if missing:
        log.info("%s predates module(s) %s; they start from their initialisation", p, sorted(new_modules))
    return model.eval()


def load_meta(path: str | Path) -> dict:
    """The ``meta`` record (how the weights were trained) of an export-format ``.pt``; {} when it has none."""
    p = Path(path)
    blob = torch.load(weights_path(p) if p.suffix == ".onnx" else p, map_location="cpu", weights_only=True)
    return dict(blob.get("meta", {})) if isinstance(blob, dict) else {}


def export_onnx(model: FusionStudent, onnx_path: str | Path, meta: dict[str, Any] | None = None,
                sample_hw: tuple[int, int] = (64, 96)) -> Path:
    """Export ``model`` to ONNX with dynamic H/W, check it, and write the sidecar and weights beside it.

    Args:
        model: the student (any device/dtype; exported as FP32 on the CPU).
        onnx_path: output ``.onnx`` path.
        meta: extra provenance for the sidecar (training data, steps, ...).
        sample_hw: trace size; any size works since H and W are dynamic.

    Returns:
        The ONNX path.
    """
    import onnx

    out = Path(onnx_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    cfg = model.cfg
    m = FusionStudent(cfg)
    m.load_state_dict({k: v.detach().float().cpu() for k, v in model.state_dict().items()})
    m.eval()
    h, w = sample_hw
    args = (torch.rand(1, 1, h, w), torch.rand(1, 3, h, w), torch.zeros(cfg.memory_shape(h, w)))
    dyn = {"thermal": {2: "H", 3: "W"}, "visible": {2: "H", 3: "W"}, "memory": {2: "h", 3: "w"},
           "fused": {2: "H", 3: "W"}, "memory_out": {2: "h", 3: "w"}}
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript-based exporter handles the data-dependent padding with dynamic H/W
        # exactly (parity 0 in tests); the dynamo exporter specialises it to the sample size.
        warnings.simplefilter("ignore")
        torch.onnx.export(m, args, str(out), dynamo=False, input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                          dynamic_axes=dyn, opset_version=OPSET, do_constant_folding=True)
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    torch.save({"config": to_dict(cfg), "state_dict": m.state_dict(), "meta": meta or {}}, weights_path(out))
    sidecar = {
        "format_version": SIDECAR_VERSION,
        "model": cfg.name,
        "config": to_dict(cfg),
        "inputs": {
            "thermal": "(1, 1, H, W) float32 in [0, 1]: 8-bit thermal / 255, or 16-bit after ThermalAGC",
            "visible": "(1, 3, H, W) float32 RGB in [0, 1] (uint8 / 255)",
            "memory": "(1, C, ceil(H/stride), ceil(W/stride)) float32; zeros on the first frame",
        },
        "outputs": {"fused": "(1, 3, H, W) float32 RGB in [0, 1]", "memory_out": "same shape as memory"},
        "normalisation": {"thermal_scale": 1.0 / 255.0, "visible_scale": 1.0 / 255.0, "mean": 0.0, "std": 1.0},
        "stride": cfg.stride,
        "memory_channels": cfg.state_channels,
        "memory_shape_rule": "(1, memory_channels, ceil(H / stride), ceil(W / stride))",
        "uses_memory": cfg.use_memory,
        "opset": OPSET,
        "onnx_sha256": sha256_file(out),
        "meta": meta or {},
    }
    sidecar_path(out).write_text(json.dumps(sidecar, indent=2) + "\n")
    log.info("exported %s (%s params) -> %s", cfg.name, sum(p.numel() for p in m.parameters()), out)
    return out


def compare_onnx_to_torch(onnx_path: str | Path, model: FusionStudent, sizes: tuple[tuple[int, int], ...] = ((64, 96), (61, 83)),
                          frames: int = 3, seed: int = 0) -> dict[str, float]:
    """Max |ONNX Runtime CPU - PyTorch FP32| over ``frames`` consecutive frames with the memory carried.

    Returns:
        ``{"fused": max_abs_diff, "memory_out": max_abs_diff}`` over all sizes and frames.
    """
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(seed)
    worst = {"fused": 0.0, "memory_out": 0.0}
    model = model.float().cpu().eval()
    for h, w in sizes:
        mem_t = model.zero_memory(h, w)
        mem_o = mem_t.numpy()
        for _ in range(frames):
            t = torch.rand(1, 1, h, w, generator=gen)
            v = torch.rand(1, 3, h, w, generator=gen)
            with torch.no_grad():
                fused_t, mem_t = model(t, v, mem_t)
            fused_o, mem_o = sess.run(None, {"thermal": t.numpy(), "visible": v.numpy(), "memory": mem_o})
            worst["fused"] = max(worst["fused"], float(np.abs(fused_o - fused_t.numpy()).max()))
            worst["memory_out"] = max(worst["memory_out"], float(np.abs(mem_o - mem_t.numpy()).max()))
    return worst


def convert_onnx_fp16(onnx_path: str | Path, out_path: str | Path) -> Path:
    """FP16 weights and activations, FP32 graph inputs/outputs (so callers need no change)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(onnx_path))
    # GridSample, Resize and the Range that builds the sampling grid stay FP32: coordinates lose pixels in half precision.
    half = convert_float_to_float16(model, keep_io_types=True, op_block_list=["GridSample", "Resize", "Range"])
    onnx.save(half, str(out_path))
    return Path(out_path)
