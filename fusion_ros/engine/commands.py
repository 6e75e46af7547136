"""``fusion-ros build-engine``: build (or reuse) a cached TensorRT engine from an exported model.

The defaults are :class:`~fusion_ros.engine.base.EngineConfig`'s, so the command builds the engine the node would.
"""

from __future__ import annotations

import argparse
import json

from fusion_ros.engine.base import EngineConfig
from fusion_ros.engine.bench import parse_hw

__all__ = ["register"]

DEFAULTS = EngineConfig()

EPILOG = """examples:
  fusion-ros build-engine --onnx models/fusion_lite.onnx --fp16
  fusion-ros build-engine --onnx models/fusion_lite.onnx --fp16 --opt-hw 720x1280 --max-hw 1080x1920
"""


def _hw_text(hw: tuple[int, int]) -> str:
    return f"{hw[0]}x{hw[1]}"


def cmd_build_engine(args: argparse.Namespace) -> int:
    from fusion_ros.engine.factory import create_backend

    cfg = EngineConfig(model_path=args.onnx, backend="tensorrt", precision="fp16" if args.fp16 else "fp32",
                       cache_dir=args.cache_dir, min_hw=args.min_hw, opt_hw=args.opt_hw, max_hw=args.max_hw)
    print(json.dumps(create_backend(cfg).describe(), indent=2))
    return 0


def register(subparsers) -> None:
    class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
        """Show defaults and keep the epilog's line breaks."""

    b = subparsers.add_parser("build-engine", help="build (or reuse) a cached TensorRT engine from an ONNX model",
                              formatter_class=_Formatter, epilog=EPILOG)
    b.add_argument("--onnx", required=True, help="exported .onnx with its sidecar")
    b.add_argument("--fp16", action="store_true", help="FP16 precision")
    b.add_argument("--cache-dir", default=DEFAULTS.cache_dir, help="engine cache directory")
    # String defaults go through type=parse_hw like a typed value, and show as HxW in --help.
    b.add_argument("--min-hw", type=parse_hw, default=_hw_text(DEFAULTS.min_hw), help="smallest input HxW of the profile")
    b.add_argument("--opt-hw", type=parse_hw, default=_hw_text(DEFAULTS.opt_hw), help="input HxW the engine is tuned for")
    b.add_argument("--max-hw", type=parse_hw, default=_hw_text(DEFAULTS.max_hw), help="largest input HxW of the profile")
    b.set_defaults(func=cmd_build_engine)
