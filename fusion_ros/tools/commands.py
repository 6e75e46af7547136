"""CLI command of the tools (registered by fusion_ros.cli): ``demo``. (``bench`` registers itself in
fusion_ros.tools.bench.)"""

from __future__ import annotations

import argparse

__all__ = ["register"]

DEMO_EPILOG = """examples:
  fusion-ros demo --out demo_out
  fusion-ros demo --pairs ../shared/data/video/dev/0111_1753 --out demo_pairs
  fusion-ros demo --video ../shared/data/video/train/0113_1714/ir.mp4 ../shared/data/video/train/0113_1714/vi.mp4 --frames 45
"""

def _demo(args: argparse.Namespace) -> int:
    from fusion_ros.config import parse_set_args
    from fusion_ros.tools.demo import run_demo

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


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown, epilog examples kept line by line."""


def register(subparsers) -> None:
    """Add ``demo`` to the ``fusion-ros`` parser."""
    fmt = _Formatter
    p = subparsers.add_parser("demo", help="run the node on a built-in night scene (or your data) and write videos",
                              description="Start the fusion node, a player and a recorder over real ROS 2 topics; "
                                          "write fused.mp4, strip.png (thermal | rgb | fused) and summary.json.",
                              epilog=DEMO_EPILOG, formatter_class=fmt)
    p.add_argument("--out", default="demo_out", help="output folder")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--pairs", metavar="DIR", help="image pairs folder with ir/ and vi/ (same stems)")
    src.add_argument("--video", nargs=2, metavar=("IR", "VI"), help="registered IR and visible clip: two video files or two frame folders")
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
