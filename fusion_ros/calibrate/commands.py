"""``fusion-ros calibrate``: the thermal->RGB homography from recordings (registered by fusion_ros.cli)."""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["register"]

EPILOG = """inputs (one of):
  --bag BAG --rgb-topic T --thermal-topic T   a rosbag2 (mcap or sqlite3), paired with the node's sync and AGC
  --pairs DIR                                 aligned frame folders DIR/ir/<name>.png + DIR/vi/<name>.png
  --self-test DATA                            known-warp accuracy on real aligned pairs (prints JSON)

outputs: FILE.yaml (params fragment), FILE.report.json (residuals, frames used), FILE.overlay.png
(RGB edges in green over the warped thermal: before | after).

examples:
  fusion-ros calibrate --pairs ../shared/data/video/dev/0111_1753 --max-frames 6 --out calib.yaml
  fusion-ros calibrate --bag drive_bag --rgb-topic /camera/image_raw --thermal-topic /thermal/image_raw \\
      --every 2 --out calib_bag.yaml
  fusion-ros calibrate --bag board_bag --rgb-topic /camera/image_raw --thermal-topic /thermal/image_raw \\
      --target checkerboard --board 7x5 --out calib_board.yaml
  fusion-ros calibrate --self-test ../shared/data/video/dev/0111_1753 --frames 3 --trials 1
then: ros2 launch fusion_ros fusion.launch.py params_file:=calib.yaml (or paste the homography line into yours)
"""


def _board(text: str) -> tuple[int, int]:
    try:
        cols, rows = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}': expected COLSxROWS inner corners, e.g. 7x5") from None
    if cols < 2 or rows < 2:
        raise argparse.ArgumentTypeError(f"'{text}': a board needs at least 2x2 inner corners")
    return cols, rows


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from fusion_ros.errors import ConfigError

    if args.self_test:
        return _self_test(args)
    if bool(args.bag) == bool(args.pairs):
        raise ConfigError("give exactly one of --bag BAG (with --rgb-topic and --thermal-topic) or --pairs DIR")
    if args.bag and not (args.rgb_topic and args.thermal_topic):
        raise ConfigError("--bag needs --rgb-topic and --thermal-topic (e.g. /camera/image_raw /thermal/image_raw)")
    if not args.out:
        raise ConfigError("--out FILE.yaml is required (the params fragment; the report and overlay go beside it)")
    if args.target == "checkerboard" and not args.board:
        raise ConfigError("--target checkerboard needs --board COLSxROWS (inner corners, e.g. 7x5)")
    from fusion_ros.calibrate.run import CalibrateRequest, calibrate

    summary = calibrate(CalibrateRequest(
        bag=args.bag, rgb_topic=args.rgb_topic, thermal_topic=args.thermal_topic, pairs=args.pairs,
        out=args.out, force=args.force, model=args.model, target=args.target, board=args.board,
        initial=args.initial, every=args.every, max_frames=args.max_frames, slop_s=args.slop,
        progress=not args.quiet))
    print(json.dumps(summary, indent=1, allow_nan=False) if args.json else summary["message"])
    return 0


def _self_test(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from fusion_ros.calibrate.benchmark import load_groups, run_known_warps
    from fusion_ros.pipeline.registration_estimate import EstimateConfig

    groups = load_groups(args.self_test)
    with tqdm(total=len(groups) * args.trials, desc="known warps", unit="trial", disable=args.quiet,
              file=sys.stderr) as bar:
        result = run_known_warps(groups, args.frames, args.trials, args.seed, EstimateConfig(model=args.model),
                                 progress=bar.update)
    print(json.dumps(result, indent=1, allow_nan=False))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="estimate the thermal->RGB homography from recordings",
                       description="Estimate the node's thermal->RGB `homography` from ordinary recorded scenes "
                                   "(edge maps, coarse search + ECC, robust over frames) or from a heated "
                                   "checkerboard, and write a params fragment, a report and an overlay.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("input")
    src.add_argument("--bag", help="rosbag2 folder or .mcap/.db3 file")
    src.add_argument("--rgb-topic", help="RGB sensor_msgs/Image topic in the bag")
    src.add_argument("--thermal-topic", help="thermal sensor_msgs/Image topic in the bag")
    src.add_argument("--pairs", help="aligned pair folder (ir/ + vi/ with the same names), or a tree of them")
    src.add_argument("--self-test", metavar="DATA", help="run the known-warp accuracy check on DATA (a folder "
                     "with pairs/dev and video/dev, or one pair/clip folder) and print JSON")
    src.add_argument("--every", type=int, default=10, help="bag: use every N-th paired frame (default 10: 3 a second "
                     "at 30 Hz)")
    src.add_argument("--max-frames", type=int, default=200, help="use at most this many frames (pairs: evenly "
                     "spaced; bag: the first ones after --every), default 200")
    src.add_argument("--slop", type=float, default=None, help="bag: largest RGB/thermal stamp difference of a pair, "
                     "s (default: the node's approximate_sync_slop_s)")
    est = p.add_argument_group("estimate")
    est.add_argument("--model", choices=("homography", "affine", "similarity"), default="homography",
                     help="transform family (default homography)")
    est.add_argument("--target", choices=("scene", "checkerboard"), default="scene",
                     help="scene: ordinary recordings (default); checkerboard: a heated board seen by both cameras")
    est.add_argument("--board", type=_board, help="checkerboard inner corners COLSxROWS, e.g. 7x5")
    est.add_argument("--initial", help="homography in use: a params YAML with `homography`, or 9 comma-separated "
                     "values (default identity); 'before' in the report refers to it")
    out = p.add_argument_group("output")
    out.add_argument("--out", help="params fragment FILE.yaml; FILE.report.json and FILE.overlay.png go beside it")
    out.add_argument("--force", action="store_true", help="overwrite existing outputs")
    out.add_argument("--json", action="store_true", help="print the report summary as JSON")
    out.add_argument("--quiet", action="store_true", help="no progress bar")
    st = p.add_argument_group("self-test")
    st.add_argument("--frames", type=int, default=10, help="frames per known-warp trial (default 10)")
    st.add_argument("--trials", type=int, default=5, help="random warps per group (default 5)")
    st.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=_cmd_calibrate)
