"""ONNX export of the student, and the checks that the exported graph matches PyTorch.

The files written for a model ``X`` (``X.onnx``, ``X.json``, ``X.pt``) are the model artifact of
:mod:`fusion_ros.model.artifact`, which writes them atomically; this module produces the graph.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusion_ros.model.student import FusionStudent, fold_for_inference
from fusion_ros.model.artifact import INPUT_NAMES, OUTPUT_NAMES, write_artifact

__all__ = ["OPSET", "export_onnx", "compare_onnx_to_torch", "convert_onnx_fp16"]

log = logging.getLogger(__name__)

OPSET = 17  # GridSample needs >= 16; 17 is supported by TensorRT 10 and every current ONNX Runtime


def export_onnx(model: FusionStudent, onnx_path: str | Path, meta: dict[str, Any] | None = None,
                sample_hw: tuple[int, int] = (64, 96)) -> Path:
    """Export ``model`` to ONNX with dynamic H/W, check it, and write the sidecar and weights beside it.

    The graph is traced from :func:`fold_for_inference` of the model (same function, fewer element-wise
    operations); the weights file keeps the model's own parameters, so training continues from it unchanged.

    Args:
        model: the student (any device/dtype; exported as FP32 on the CPU).
        onnx_path: output ``.onnx`` path.
        meta: extra provenance for the sidecar (training data, steps, ...).
        sample_hw: trace size; any size works since H and W are dynamic.

    Returns:
        The ONNX path.
    """
    import onnx

    cfg = model.cfg
    m = FusionStudent(cfg)
    m.load_state_dict({k: v.detach().float().cpu() for k, v in model.state_dict().items()})
    m.eval()
    h, w = sample_hw
    args = (torch.rand(1, 1, h, w), torch.rand(1, 3, h, w), torch.zeros(cfg.memory_shape(h, w)))
    dyn = {"thermal": {2: "H", 3: "W"}, "visible": {2: "H", 3: "W"}, "memory": {2: "h", 3: "w"},
           "fused": {2: "H", 3: "W"}, "memory_out": {2: "h", 3: "w"}}

    def write_graph(path: Path) -> None:
        with warnings.catch_warnings(), torch.no_grad():
            # The TorchScript-based exporter handles the data-dependent padding with dynamic H/W
            # exactly (parity 0 in tests); the dynamo exporter specialises it to the sample size.
            warnings.simplefilter("ignore")
            torch.onnx.export(fold_for_inference(m, packed=True), args, str(path), dynamo=False, input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                              dynamic_axes=dyn, opset_version=OPSET, do_constant_folding=True)
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)

    out = write_artifact(onnx_path, write_graph, cfg, m.state_dict(), OPSET, meta)
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

    from fusion_ros.model.artifact import write_derived_sidecar

    model = onnx.load(str(onnx_path))
    # GridSample, Resize and the Range that builds the sampling grid stay FP32: coordinates lose pixels in half precision.
    half = convert_float_to_float16(model, keep_io_types=True, op_block_list=["GridSample", "Resize", "Range"])
    out = Path(out_path)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp{out.suffix}")
    try:
        onnx.save(half, str(tmp))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    write_derived_sidecar(onnx_path, out, {"precision": "fp16 weights and activations, fp32 inputs/outputs"})
    return out
