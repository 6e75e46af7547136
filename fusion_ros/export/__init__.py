"""ONNX export and export checks; the files it writes are the artifact of :mod:`fusion_ros.model.artifact`."""

from fusion_ros.export.onnx_export import OPSET, compare_onnx_to_torch, convert_onnx_fp16, export_onnx
from fusion_ros.model.artifact import load_student  # noqa: F401 - kept for callers that load weights through export

__all__ = ["OPSET", "compare_onnx_to_torch", "convert_onnx_fp16", "export_onnx"]
