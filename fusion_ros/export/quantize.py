"""INT8 static quantization of an exported student (ONNX Runtime QDQ), calibrated on real pairs.

The calibration inputs are what the node gives the network: each pair goes through the :class:`Fuser`'s
AGC, registration and conversion (``Fuser.network_inputs``) at one working size. The streaming memory is
calibrated too: every pair is fed once with a zero memory (a first frame) and once with the memory the FP32
graph produced for it (a later frame). The result is a model artifact of its own (``X.onnx`` + sidecar), so
the node, ``fusion-ros eval`` and ``fusion-ros bench`` load it like any other model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from fusion_ros.errors import ConfigError

__all__ = ["calibration_feeds", "quantize_int8"]


def calibration_feeds(onnx_path: Path, pairs: Sequence[tuple[np.ndarray, np.ndarray]],
                      size: tuple[int, int]) -> Iterator[dict[str, np.ndarray]]:
    """Network feeds for calibration: per pair, one with a zero memory and one with the FP32 graph's memory."""
    import cv2
    import onnxruntime as ort

    from fusion_ros.model.artifact import open_artifact
    from fusion_ros.pipeline.fuser import Fuser

    artifact = open_artifact(onnx_path)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    w, h = size
    stride = artifact.stride
    zeros = np.zeros((1, artifact.memory_channels, -(-h // stride), -(-w // stride)), np.float32)
    fuser = Fuser(None)
    for thermal, rgb in pairs:
        fuser.reset()                   # every pair is a scene of its own: fresh AGC levels
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        t, v = fuser.network_inputs(thermal, rgb)
        first = {"thermal": t, "visible": v, "memory": zeros}
        yield first
        _, memory = session.run(None, first)
        yield {"thermal": t, "visible": v, "memory": memory}


def quantize_int8(onnx_path: str | Path, out_path: str | Path, pairs: Sequence[tuple[np.ndarray, np.ndarray]],
                  size: tuple[int, int] = (640, 480)) -> Path:
    """Write an INT8 (QDQ: uint8 activations, per-channel int8 weights) copy of ``onnx_path`` with its sidecar.

    Args:
        onnx_path: an exported student (``.onnx`` with its sidecar).
        out_path: the ``.onnx`` to write (its sidecar is written beside it, atomically, last).
        pairs: calibration pairs (thermal (h, w) uint8/uint16, RGB (H, W, 3) uint8).
        size: (width, height) the calibration pairs are fused at.

    Returns:
        ``out_path``.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from fusion_ros.model.artifact import open_artifact, write_derived_sidecar

    src, out = Path(onnx_path), Path(out_path)
    if not pairs:
        raise ConfigError("INT8 calibration needs at least one pair")
    open_artifact(src)                  # a missing or foreign sidecar fails here, naming the model, before any work

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = calibration_feeds(src, pairs, size)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    out.parent.mkdir(parents=True, exist_ok=True)
    pre = out.with_name(f".{out.stem}.{os.getpid()}.pre.onnx")
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp.onnx")
    try:
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(tmp), _Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
        os.replace(tmp, out)
    finally:
        pre.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    write_derived_sidecar(src, out, {"quantization": {
        "format": "QDQ", "activations": "uint8", "weights": "int8 per channel",
        "calibration_pairs": len(pairs), "calibration_size": list(size)}})
    return out
