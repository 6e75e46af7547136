"""``fusion-ros export`` and ``fusion-ros build-engine``."""

from __future__ import annotations

import argparse
import json

__all__ = ["register"]


def _hw(text: str) -> tuple[int, int]:
    try:
        h, w = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW like 480x640, got '{text}'") from None
    return h, w


def cmd_export(args: argparse.Namespace) -> int:
    from fusion_ros.export import compare_onnx_to_torch, convert_onnx_fp16, export_onnx, load_meta, load_student
    from fusion_ros.model import create_model

    meta = {"source": args.checkpoint or f"untrained {args.model}"}
    if args.checkpoint:
        model = load_student(args.checkpoint)
        # Keep how the weights were trained (steps, data, teachers) when re-exporting them.
        meta = {**load_meta(args.checkpoint), **meta}
    else:
        model = create_model(args.model, use_memory=not args.no_memory)
    out = export_onnx(model, args.out, meta=meta)
    report = {"onnx": str(out), "parity_max_abs_diff": compare_onnx_to_torch(out, model)}
    if args.fp16:
        half = convert_onnx_fp16(out, out.with_name(out.stem + "_fp16.onnx"))
        report["onnx_fp16"] = str(half)
    print(json.dumps(report, indent=2))
    return 0


def cmd_build_engine(args: argparse.Namespace) -> int:
    from fusion_ros.engine import EngineConfig
    from fusion_ros.engine.tensorrt_backend import TensorRTBackend
    from fusion_ros.engine.base import resolve_model_path

    cfg = EngineConfig(model_path=args.onnx, backend="tensorrt", precision="fp16" if args.fp16 else "fp32",
                       cache_dir=args.cache_dir, min_hw=args.min_hw, opt_hw=args.opt_hw, max_hw=args.max_hw)
    backend = TensorRTBackend(resolve_model_path(cfg.model_path), cfg)
    print(json.dumps(backend.describe(), indent=2))
    return 0


def register(subparsers) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = subparsers.add_parser("export", help="export a student to ONNX (+ sidecar JSON and weights) and check it against PyTorch",
                              formatter_class=fmt, epilog="examples:\n  fusion-ros export --checkpoint runs/lite/best.pt --out models/fusion_lite.onnx\n"
                              "  fusion-ros export --model default --out /tmp/default.onnx --fp16")
    p.add_argument("--model", choices=("lite", "default"), default="lite", help="variant when no checkpoint is given (untrained)")
    p.add_argument("--checkpoint", default="", help="student weights (.pt written by training or export)")
    p.add_argument("--out", required=True, help="output .onnx path (the .json sidecar and .pt are written beside it)")
    p.add_argument("--no-memory", action="store_true", help="export a pure image model (memory passes through)")
    p.add_argument("--fp16", action="store_true", help="also write an FP16 ONNX (X_fp16.onnx) with FP32 inputs/outputs")
    p.set_defaults(func=cmd_export)

    b = subparsers.add_parser("build-engine", help="build (or reuse) a cached TensorRT engine from an ONNX model",
                              formatter_class=fmt, epilog="examples:\n  fusion-ros build-engine --onnx models/fusion_default.onnx --fp16\n"
                              "  fusion-ros build-engine --onnx models/fusion_lite.onnx --fp16 --opt-hw 720x1280 --max-hw 1080x1920")
    b.add_argument("--onnx", required=True, help="exported .onnx with its sidecar")
    b.add_argument("--fp16", action="store_true", help="FP16 precision")
    b.add_argument("--cache-dir", default="~/.cache/fusion_ros/engines", help="engine cache directory")
    b.add_argument("--min-hw", type=_hw, default=(64, 64), help="smallest input HxW of the profile")
    b.add_argument("--opt-hw", type=_hw, default=(480, 640), help="input HxW the engine is tuned for")
    b.add_argument("--max-hw", type=_hw, default=(1088, 1920), help="largest input HxW of the profile")
    b.set_defaults(func=cmd_build_engine)
