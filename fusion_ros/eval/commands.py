"""CLI commands of this stage (registered by fusion_ros.cli): ``fuse``, ``bag fuse`` and ``eval``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["register"]

FUSE_EPILOG = """examples:
  fusion-ros fuse --pairs ../shared/data/pairs/dev/tno --out out/tno
  fusion-ros fuse --pairs ../shared/data/pairs/dev --out out/dev --model models/fusion_lite.onnx
  fusion-ros fuse --video ../shared/data/video/dev/0111_1753/ir ../shared/data/video/dev/0111_1753/vi --out out/clip
  fusion-ros fuse --video ir.mp4 vi.mp4 --out out/clip --no-memory
"""

BAG_EPILOG = """examples:
  fusion-ros bag fuse in_bag out_bag --rgb-topic /camera/image_raw --thermal-topic /thermal/image_raw
  fusion-ros bag fuse in.mcap out_bag --rgb-topic /cam/image_raw --thermal-topic /lwir/image_raw --set inference_size=[320,240]
"""

EVAL_EPILOG = """methods (--methods, any number):
  NAME=DIR           folder of fused images (DIR/<dataset>/<stem>.* or DIR/<stem>.*; grey = fused luminance)
  NAME=MODEL         student .onnx/.pt run through the engine and the Fuser; 'lite' = the shipped model
  copy-vis, copy-ir  the sources themselves (always added as baseline rows)
  teacher-mean[:A,B] pixel mean of the folder methods (all, or the named ones)

examples:
  T=../shared/data/teachers
  fusion-ros eval --pairs ../shared/data/pairs/dev --methods SeAFusion=$T/SeAFusion/dev IFCNN=$T/IFCNN/dev \\
      TarDAL=$T/TarDAL/dev AUIF=$T/AUIF/dev teacher-mean lite=models/fusion_lite.onnx --json --report eval_out
  fusion-ros eval --pairs ../shared/data/pairs/dev/msrs --methods lite=models/fusion_lite.onnx --detect --no-metrics
  fusion-ros eval --video ../shared/data/video/dev --methods lite --json
"""


def _cmd_fuse(args: argparse.Namespace) -> int:
    from fusion_ros.errors import ConfigError
    from fusion_ros.eval.fuse import StudentConfig, check_output_folder, fuse_pairs, fuse_video, make_fuser

    if bool(args.pairs) == bool(args.video):
        raise ConfigError("give exactly one of --pairs DIR or --video IR VI")
    inputs = {"--pairs": args.pairs} if args.pairs else {"--video IR": args.video[0], "--video VI": args.video[1]}
    missing = [f"{flag} {src}" for flag, src in inputs.items() if not Path(src).exists()]
    if missing:
        raise ConfigError(f"{'; '.join(missing)}: no such file or folder")
    # Refused before the model loads; fuse_pairs / fuse_video check it again for library callers.
    check_output_folder(args.out, inputs)
    fuser = make_fuser(StudentConfig(model_path=args.model, backend=args.backend, precision=args.precision,
                                     threads=args.threads, use_memory=not args.no_memory,
                                     auto_align=not args.no_auto_align))
    if args.pairs:
        written = fuse_pairs(args.pairs, args.out, fuser, progress=not args.quiet)
    else:
        written = fuse_video(args.video[0], args.video[1], args.out, fuser, progress=not args.quiet)
    print(f"wrote {len(written)} fused images to {args.out}")
    return 0


def _cmd_bag_fuse(args: argparse.Namespace) -> int:
    from fusion_ros.config import parse_set_args
    from fusion_ros.eval.bag_fuse import fuse_bag

    result = fuse_bag(args.input, args.output, rgb_topic=args.rgb_topic, thermal_topic=args.thermal_topic,
                      info_topic=args.info_topic, out_topic=args.out_topic, overrides=parse_set_args(args.set))
    print(json.dumps(result, indent=2))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from fusion_ros.errors import ConfigError
    from fusion_ros.eval.report import markdown_tables, to_json, write_report
    from fusion_ros.eval.runner import EvalConfig, evaluate_detection, evaluate_misalignment, evaluate_pairs, \
        evaluate_video, parse_method, prepare_methods

    if not args.pairs and not args.video:
        raise ConfigError("give --pairs DIR and/or --video DIR")
    if args.detect and not args.pairs:
        raise ConfigError("--detect needs --pairs (a folder with labels/, e.g. ../shared/data/pairs/dev/msrs)")
    cfg = EvalConfig(backend=args.backend, threads=args.threads, jobs=args.jobs, grid_images=args.grid,
                     speed=not args.no_speed, metrics=tuple(args.metrics), misalign_px=args.misalign,
                     misalign_deg=args.misalign_deg, auto_align=not args.no_auto_align)
    methods = prepare_methods([parse_method(s) for s in args.methods], cfg)
    result: dict = {}
    if args.pairs and not args.no_metrics:
        evaluate = evaluate_misalignment if cfg.misaligned else evaluate_pairs
        result = evaluate(args.pairs, methods, cfg, progress=not args.quiet)
    if args.video:
        result["video"] = evaluate_video(args.video, methods, max_frames=args.max_frames)
    if args.detect:
        from fusion_ros.eval.detection import load_detector

        result["detection"] = evaluate_detection(args.pairs, methods, load_detector(args.detector))
    if args.report:
        files = write_report(args.report, result)
        print(f"report: {', '.join(str(f) for f in files)}", file=sys.stderr)
    if args.json:
        print(json.dumps(to_json({k: v for k, v in result.items() if k != "per_image" or args.per_image}),
                         indent=1, allow_nan=False))
    else:
        print(markdown_tables(result))
    return 0


def register(subparsers) -> None:
    """Add ``fuse``, ``bag`` (``bag fuse``) and ``eval`` to the ``fusion-ros`` parser."""
    fmt = argparse.ArgumentDefaultsHelpFormatter

    class _Fmt(fmt, argparse.RawDescriptionHelpFormatter):
        pass

    p = subparsers.add_parser("fuse", help="fuse a folder of IR/VIS pairs or a clip into PNGs with a student model",
                              formatter_class=_Fmt, epilog=FUSE_EPILOG)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--pairs", metavar="DIR", help="folder with ir/ + vi/ (or a tree of such datasets); "
                     "independent images: memory reset per pair")
    src.add_argument("--video", nargs=2, metavar=("IR", "VI"), help="a clip: two frame folders or two video files; "
                     "memory carried from frame to frame")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (dataset sub-folders mirrored)")
    p.add_argument("--model", default="", help="student .onnx/.pt, or lite/default; empty = shipped lite")
    p.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "torch", "tensorrt"),
                   help="inference backend")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16"), help="fp16 applies on GPU backends")
    p.add_argument("--threads", type=int, default=0, help="CPU inference threads, 0 = all cores")
    p.add_argument("--no-memory", action="store_true", help="fuse every video frame on its own (no streaming memory)")
    p.add_argument("--no-auto-align", action="store_true",
                   help="use the thermal image as registered, without the pipeline's automatic shift")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_fuse)

    bag = subparsers.add_parser("bag", help="offline tools on rosbag2 recordings", formatter_class=_Fmt,
                                epilog=BAG_EPILOG)
    bag_sub = bag.add_subparsers(dest="bag_command", metavar="<bag command>")
    f = bag_sub.add_parser("fuse", help="fuse a recorded bag into a new bag (fused image + camera_info)",
                           description="Pair, fuse and write fused/image_raw + fused/camera_info with the RGB headers, "
                                       "through the same pipeline as the node.",
                           formatter_class=_Fmt, epilog=BAG_EPILOG)
    f.add_argument("input", help="input rosbag2 (folder, .db3 or .mcap)")
    f.add_argument("output", help="output rosbag2 folder (must not exist)")
    f.add_argument("--rgb-topic", required=True, help="RGB image topic")
    f.add_argument("--thermal-topic", required=True, help="thermal image topic")
    f.add_argument("--info-topic", default="", help="RGB camera_info topic (default: <rgb ns>/camera_info if present)")
    f.add_argument("--out-topic", default="/fused/image_raw", help="fused image topic written")
    f.add_argument("--set", action="append", metavar="KEY=VALUE", help="node parameter override (the node's names)")
    f.set_defaults(func=_cmd_bag_fuse)
    bag.set_defaults(func=lambda a: (bag.print_help(), 2)[1])

    e = subparsers.add_parser("eval", help="fusion metrics, flicker and detector mAP of methods, side by side",
                              formatter_class=_Fmt, epilog=EVAL_EPILOG)
    e.add_argument("--pairs", metavar="DIR", help="pairs folder (dataset or tree of datasets)")
    e.add_argument("--methods", nargs="+", default=["lite"], metavar="SPEC", help="methods to compare (see below)")
    e.add_argument("--video", metavar="DIR", help="clips folder (e.g. video/dev): flicker of students with and "
                   "without memory, the visible input and copy-ir")
    e.add_argument("--detect", action="store_true", help="detector mAP@0.5 on visible vs fused (pairs with labels/)")
    e.add_argument("--detector", default="ssd", help="'ssd' (frozen SSD-MobileNet-v2-COCO) or package.module:factory "
                   "returning a callable rgb -> [fusion_ros.eval.detection.Detection]")
    e.add_argument("--no-metrics", action="store_true", help="skip the per-pair fusion metrics")
    e.add_argument("--metrics", nargs="+", default=["EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM"],
                   metavar="NAME", help="metrics to compute")
    e.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    e.add_argument("--per-image", action="store_true", help="include per-image rows in the JSON")
    e.add_argument("--report", metavar="DIR", default="", help="write report.md, per_image.csv, grid.png, "
                   "flicker.png, results.json here")
    e.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "torch", "tensorrt"),
                   help="inference backend for students")
    e.add_argument("--threads", type=int, default=0, help="CPU inference threads for students, 0 = all cores")
    e.add_argument("--jobs", type=int, default=0, help="metric worker processes, 0 = min(2, CPUs), 1 = none")
    e.add_argument("--grid", type=int, default=4, help="pairs shown in grid.png")
    e.add_argument("--max-frames", type=int, default=0, help="frames per clip for --video, 0 = all")
    e.add_argument("--no-speed", action="store_true", help="skip the bench timing of students")
    e.add_argument("--misalign", type=float, default=0.0, metavar="PX",
                   help="shift the thermal input of the students and of a 50/50 blend (the reference) by PX pixels right "
                        "and down, also score them aligned, and report each one's relative drop (misalign_drop)")
    e.add_argument("--misalign-deg", type=float, default=0.0, metavar="DEG",
                   help="also rotate that thermal input by DEG degrees about its centre (before --misalign's shift); "
                        "alone, a rotation only")
    e.add_argument("--no-auto-align", action="store_true",
                   help="students use the thermal image as given, without the pipeline's automatic shift")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=_cmd_eval)
