"""``fusion-ros export``: a student's weights -> the model artifact (ONNX + sidecar + weights), checked against PyTorch."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from fusion_ros.errors import ConfigError
from fusion_ros.model.variants import DEFAULT_VARIANT, VARIANTS

__all__ = ["register", "check_export_target"]

EPILOG = """examples:
  fusion-ros export --checkpoint runs/lite/best_stage1.pt --out runs/lite/lite.onnx
  fusion-ros export --checkpoint runs/lite/fusion_lite.pt --out models/fusion_lite.onnx --force
  fusion-ros export --model default --out /tmp/default.onnx --fp16
  fusion-ros export --int8-from models/fusion_lite.onnx --calib ../shared/data/pairs/train --out /tmp/lite_int8.onnx
"""


def _trained_by(onnx_path: Path) -> str:
    """What the sidecar says made the model at ``onnx_path`` ("" when it says nothing or cannot be read)."""
    try:
        meta = json.loads(onnx_path.with_suffix(".json").read_text()).get("meta", {})
    except (OSError, ValueError, AttributeError):
        return ""
    return str(meta.get("trained_by") or meta.get("source") or "") if isinstance(meta, dict) else ""


def check_export_target(out: Path, force: bool, untrained: bool, extra: tuple[Path, ...] = ()) -> None:
    """Refuse an ``--out`` that is not an ``.onnx`` file path, or one that would replace a model without ``--force``."""
    from fusion_ros.model.artifact import existing_files

    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give the .onnx path to write, e.g. {out / 'fusion_lite.onnx'}")
    if out.suffix != ".onnx":
        raise ConfigError(f"--out {out} must end in .onnx (the .json sidecar and .pt weights are written beside it)")
    if out.parent.exists() and not out.parent.is_dir():
        raise ConfigError(f"--out {out}: {out.parent} is a file, not a folder; choose another --out")
    existing = existing_files(out) + [p for p in extra if p.exists()]
    if not existing or force:
        return
    names = ", ".join(p.name for p in existing)
    made_by = _trained_by(out)
    if untrained:
        raise ConfigError(f"--out {out}: a model is there ({names}{'; made by ' + made_by if made_by else ''}) and export without "
                          "--checkpoint writes untrained weights; pass --checkpoint WEIGHTS.pt, another --out, or --force")
    raise ConfigError(f"--out {out}: a model is there ({names}); pass --force to replace it, or choose another --out")


def _cmd_int8(args: argparse.Namespace, out: Path) -> int:
    import numpy as np

    from fusion_ros.export.quantize import quantize_int8
    from fusion_ros.io.images import read_ir, read_vis
    from fusion_ros.io.pairs import find_pairs

    src = Path(os.path.expanduser(args.int8_from))
    if not args.calib:
        raise ConfigError("--int8-from needs --calib DIR: aligned pairs (ir/ + vi/) to calibrate on, e.g. "
                          "../shared/data/pairs/train")
    if src.resolve() == out.resolve():
        raise ConfigError(f"--out {out} is the --int8-from model; choose another --out")
    check_export_target(out, args.force, untrained=False)
    found = find_pairs(args.calib)
    if not found:
        raise ConfigError(f"--calib {args.calib}: no pairs (ir/ + vi/ with the same names) found")
    pick = np.linspace(0, len(found) - 1, min(args.calib_pairs, len(found))).round().astype(int)
    pairs = [(read_ir(found[i].ir_path), read_vis(found[i].vi_path)) for i in sorted(set(pick))]
    quantize_int8(src, out, pairs)
    print(json.dumps({"onnx_int8": str(out), "from": str(src), "calibration_pairs": len(pairs)}, indent=2))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    out = Path(os.path.expanduser(args.out))
    if args.int8_from:
        return _cmd_int8(args, out)
    fp16_out = out.with_name(out.stem + "_fp16.onnx")
    check_export_target(out, args.force, untrained=not args.checkpoint, extra=(fp16_out,) if args.fp16 else ())

    from fusion_ros.export import compare_onnx_to_torch, convert_onnx_fp16, export_onnx
    from fusion_ros.model import create_model
    from fusion_ros.model.artifact import load_meta, load_student

    meta = {"source": args.checkpoint or f"untrained {args.model}"}
    if args.checkpoint:
        model = load_student(args.checkpoint)
        # Keep how the weights were trained (steps, data, teachers) when re-exporting them.
        meta = {**load_meta(args.checkpoint), **meta}
    else:
        model = create_model(args.model, use_memory=not args.no_memory)
    out = export_onnx(model, out, meta=meta)
    report = {"onnx": str(out), "parity_max_abs_diff": compare_onnx_to_torch(out, model)}
    if args.fp16:
        report["onnx_fp16"] = str(convert_onnx_fp16(out, fp16_out))
    print(json.dumps(report, indent=2))
    return 0


def register(subparsers) -> None:
    class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
        """Show defaults and keep the epilog's line breaks."""

    p = subparsers.add_parser("export", help="export a student to ONNX (+ sidecar JSON and weights) and check it against PyTorch",
                              formatter_class=_Formatter, epilog=EPILOG)
    p.add_argument("--model", choices=VARIANTS, default=DEFAULT_VARIANT, help="variant when no checkpoint is given (untrained)")
    p.add_argument("--checkpoint", default="", help="student weights (.pt written by training or export)")
    p.add_argument("--out", required=True, help="output .onnx path (the .json sidecar and .pt are written beside it)")
    p.add_argument("--force", action="store_true", help="replace a model that exists at --out")
    p.add_argument("--no-memory", action="store_true", help="export a pure image model (memory passes through)")
    p.add_argument("--fp16", action="store_true", help="also write an FP16 ONNX (X_fp16.onnx) with FP32 inputs/outputs")
    q = p.add_argument_group("INT8 (ONNX Runtime static quantization of an exported model)")
    q.add_argument("--int8-from", default="", metavar="MODEL.onnx",
                   help="write an INT8 (QDQ) copy of this exported model to --out instead of exporting weights")
    q.add_argument("--calib", default="", metavar="DIR", help="aligned pairs to calibrate on (ir/ + vi/)")
    q.add_argument("--calib-pairs", type=int, default=32, help="pairs used, evenly spaced over --calib")
    p.set_defaults(func=cmd_export)
