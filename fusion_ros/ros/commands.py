"""CLI commands of the ROS stage (registered by fusion_ros.cli): ``demo`` and ``bag fuse``."""

from __future__ import annotations

import argparse
import json

__all__ = ["register"]

DEMO_EPILOG = """examples:
  fusion-ros demo --out demo_out
  fusion-ros demo --pairs ../shared/data/video/dev/0111_1753 --out demo_pairs
  fusion-ros demo --video ../shared/data/video/train/0113_1714/ir.mp4 ../shared/data/video/train/0113_1714/vi.mp4 --frames 45
"""

BAG_EPILOG = """examples:
  fusion-ros bag fuse in_bag out_bag --rgb-topic /camera/image_raw --thermal-topic /thermal/image_raw
  fusion-ros bag fuse in.mcap out_bag --rgb-topic /cam/image_raw --thermal-topic /lwir/image_raw --set inference_size=[320,240]
"""


def _demo(args: argparse.Namespace) -> int:
    from fusion_ros.config import parse_set_args
    from fusion_ros.ros.demo import run_demo

    params = parse_set_args(args.set)
    if args.backend:
        params["backend"] = args.backend
    if args.model_path:
        params["model_path"] = args.model_path
    summary = run_demo(out=args.out, pairs=args.pairs, video=args.video, bag=args.bag, rgb_topic=args.rgb_topic,
                       thermal_topic=args.thermal_topic, frames=args.frames, rgb_hz=args.rgb_hz,
                       thermal_hz=args.thermal_hz, params=params)
    d = summary["diagnostics"]
    print(f"demo: {summary['fused_frames_received']}/{summary['rgb_frames_sent']} RGB frames came back on "
          f"fused/image_raw ({summary['source']})")
    print("diagnostics: " + ", ".join(f"{k}={d[k]}" for k in (
        "mode", "backend", "precision", "fused_frames", "passthrough_frames", "pairing_drops", "sync_offset_ms_median",
        "latency_ms_median", "latency_ms_p95", "node_overhead_ms_median", "inference_ms_median", "malformed_messages")
        if k in d))
    print("wrote: " + ", ".join(summary["files"]))
    return 0


def _bag_fuse(args: argparse.Namespace) -> int:
    from fusion_ros.config import parse_set_args
    from fusion_ros.ros.bag import fuse_bag

    result = fuse_bag(args.input, args.output, rgb_topic=args.rgb_topic, thermal_topic=args.thermal_topic,
                      info_topic=args.info_topic, out_topic=args.out_topic, overrides=parse_set_args(args.set))
    print(json.dumps(result, indent=2))
    return 0


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown, epilog examples kept line by line."""


def register(subparsers) -> None:
    """Add ``demo`` and ``bag`` (``bag fuse``) to the ``fusion-ros`` parser."""
    fmt = _Formatter
    p = subparsers.add_parser("demo", help="run the node on a built-in night scene (or your data) and write videos",
                              description="Start the fusion node, a player and a recorder over real ROS 2 topics; "
                                          "write fused.mp4, strip.png (thermal | rgb | fused) and summary.json.",
                              epilog=DEMO_EPILOG, formatter_class=fmt)
    p.add_argument("--out", default="demo_out", help="output folder")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--pairs", metavar="DIR", help="image pairs folder with ir/ and vi/ (same file names)")
    src.add_argument("--video", nargs=2, metavar=("IR", "VI"), help="registered IR and visible video files")
    src.add_argument("--bag", metavar="PATH", help="rosbag2 (sqlite3 or mcap) with RGB and thermal topics")
    p.add_argument("--rgb-topic", default="/camera/image_raw", help="RGB topic in --bag")
    p.add_argument("--thermal-topic", default="/thermal/image_raw", help="thermal topic in --bag")
    p.add_argument("--frames", type=int, default=60, help="frames to play")
    p.add_argument("--rgb-hz", type=float, default=15.0, help="RGB camera rate")
    p.add_argument("--thermal-hz", type=float, default=9.0, help="thermal camera rate")
    p.add_argument("--backend", default="", help="node parameter 'backend' (empty = the node's default)")
    p.add_argument("--model-path", default="", help="node parameter 'model_path' (empty = shipped lite model)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="any node parameter, e.g. inference_size=[320,240]")
    p.set_defaults(func=_demo)

    bag = subparsers.add_parser("bag", help="offline tools on rosbag2 recordings", formatter_class=fmt,
                                epilog=BAG_EPILOG)
    bag_sub = bag.add_subparsers(dest="bag_command", metavar="<bag command>")
    f = bag_sub.add_parser("fuse", help="fuse a recorded bag into a new bag (fused image + camera_info)",
                           description="Pair, fuse and write fused/image_raw + fused/camera_info with the RGB headers, "
                                       "through the same pipeline as the node.",
                           formatter_class=fmt, epilog=BAG_EPILOG)
    f.add_argument("input", help="input rosbag2 (folder, .db3 or .mcap)")
    f.add_argument("output", help="output rosbag2 folder (must not exist)")
    f.add_argument("--rgb-topic", required=True, help="RGB image topic")
    f.add_argument("--thermal-topic", required=True, help="thermal image topic")
    f.add_argument("--info-topic", default="", help="RGB camera_info topic (default: <rgb ns>/camera_info if present)")
    f.add_argument("--out-topic", default="/fused/image_raw", help="fused image topic written")
    f.add_argument("--set", action="append", metavar="KEY=VALUE", help="node parameter override (same names)")
    f.set_defaults(func=_bag_fuse)
    bag.set_defaults(func=lambda a: (bag.print_help(), 2)[1])
