"""ONNX export, sidecar metadata and export checks."""

from fusion_ros.export.onnx_export import (INPUT_NAMES, OUTPUT_NAMES, compare_onnx_to_torch, convert_onnx_fp16, export_onnx,
                                           load_meta, load_student, read_sidecar, sha256_file, sidecar_path, weights_path)

__all__ = ["INPUT_NAMES", "OUTPUT_NAMES", "compare_onnx_to_torch", "convert_onnx_fp16", "export_onnx", "load_meta", "load_student",
           "read_sidecar", "sha256_file", "sidecar_path", "weights_path"]
