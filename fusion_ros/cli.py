"""``fusion-ros <command>``: one small function per command; the logic lives in the library.

Each stage package owns its commands in a ``commands.py`` with ``register(subparsers)``;
this file only lists them. Heavy imports (torch, rclpy) happen inside the command functions,
so ``fusion-ros --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from fusion_ros import __version__
from fusion_ros.errors import FusionError

__all__ = ["main", "build_parser"]

COMMAND_MODULES = (
    "fusion_ros.export.commands",    # export
    "fusion_ros.engine.commands",    # build-engine
    "fusion_ros.eval.commands",      # fuse, bag fuse, eval
    "fusion_ros.train.commands",     # train, teachers
    "fusion_ros.tools.commands",     # demo
    "fusion_ros.tools.bench",        # bench
    "fusion_ros.calibrate.commands", # calibrate
)

EPILOG = """examples:
  fusion-ros demo --out demo_out
  fusion-ros fuse --pairs ../shared/data/pairs/dev/tno --out out/tno
  fusion-ros export --checkpoint runs/lite/fusion_lite.pt --out models/my_lite.onnx
  fusion-ros build-engine --onnx models/fusion_lite.onnx --fp16
  fusion-ros bench --json
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fusion-ros", description="Thermal + RGB fusion: tools around the ROS 2 node.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"fusion_ros {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except FusionError as exc:
        print(f"fusion-ros {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        # A file system refusal (no such file, permission, disk full) is the user's to fix: one line, no traceback.
        if args.verbose:
            raise
        print(f"fusion-ros {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"fusion-ros {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
